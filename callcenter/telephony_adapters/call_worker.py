"""What the bridger and the releaser share: once per call, on an event, on any instance.

Both follow one kind of bus event about a call (``connect``, ``ended``),
claim the call's one row so that exactly one instance acts, retry the peer
with backoff under a lease that each attempt renews, and run a slow
catch-up pass (and one on every ``resync``) for events that were lost or
claims whose instance died. This class is that loop; a subclass says which
event it follows and what it does for one call.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import ClassVar, Self

from prometheus_client import Counter

from callcenter.events import Event, Subscription
from callcenter.queue.calls import CallDesk
from callcenter.runtime import TRANSIENT_DB_ERRORS, Supervisor
from callcenter.telephony_adapters.gateway import TelephonyGateway

_log = logging.getLogger(__name__)


class CallWorker(ABC):
    #: The bus event kind whose key is the call id to act on.
    event_kind: ClassVar[str]
    #: Names the worker's tasks and log lines.
    name: ClassVar[str]
    #: What stops happening when the worker's task dies (said in the log).
    duty: ClassVar[str]

    def __init__(
        self,
        desk: CallDesk,
        gateway: TelephonyGateway,
        *,
        attempts: int,
        backoff_seconds: float,
        timeout_seconds: float,
        catch_up_seconds: float,
        results: Counter | None,
    ) -> None:
        self.desk = desk
        self.gateway = gateway
        self.attempts = max(1, attempts)
        self.backoff_seconds = backoff_seconds
        self.timeout_seconds = timeout_seconds
        self.catch_up_seconds = catch_up_seconds
        # Every attempt renews the lease, so it only has to outlast one attempt and its pause.
        self.lease_seconds = timeout_seconds + backoff_seconds * 2 ** (self.attempts - 1) + 30
        self.instance = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._results = results
        #: The worker's tasks; ``/readyz`` reports the ones that are down.
        self.supervisor = Supervisor(self.name, duty=self.duty)

    @abstractmethod
    async def handle(self, call_id: int) -> str | None:
        """Act on one call (claim it, then do the work); what happened, or None."""

    @abstractmethod
    async def catch_up(self) -> int:
        """Act on calls whose event was lost or whose claim expired; how many."""

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Self]:
        """Follow the events and catch up for the life of the block (supervised)."""
        sub = self.desk.bus.subscribe(10_000, kinds={self.event_kind})
        self.supervisor.start(f"{self.name}-events", functools.partial(self._listen, sub))
        self.supervisor.start(f"{self.name}-catch-up", self._catch_up_loop)
        try:
            yield self
        finally:
            self.desk.bus.unsubscribe(sub)
            await self.supervisor.stop()

    @property
    def failure(self) -> str | None:
        """What of the worker is down (``/readyz`` says so), or None."""
        return self.supervisor.failure

    async def _listen(self, sub: Subscription) -> None:
        while True:
            event: Event = await sub.get()
            if event.kind == self.event_kind and event.key.isdigit():
                self.supervisor.spawn(self.handle(int(event.key)), f"call {event.key}")
            elif event.kind == "resync":
                self.supervisor.spawn(self.catch_up(), "catch-up after a resync")

    async def _catch_up_loop(self) -> None:
        while True:
            await asyncio.sleep(self.catch_up_seconds)
            try:
                await self.catch_up()
            except TRANSIENT_DB_ERRORS as exc:
                _log.warning("%s catch-up failed (%s); retrying", self.name, exc)

    def _count(self, peer: str, result: str) -> None:
        if self._results is not None:
            self._results.labels(peer, result).inc()
