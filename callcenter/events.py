"""The cross-instance event bus on PostgreSQL LISTEN/NOTIFY.

State is written first; then an event naming *what* changed (a kind and an
id; the data only in an agent's notification, sent by the database at commit
with a version, see ``Event``) is published with ``pg_notify``. Every instance listens on
one dedicated connection (never a pooled one: a pool's reset would
``UNLISTEN``) that reconnects in a loop, and fans each event out in process
to bounded per-subscriber queues. A subscriber that falls behind is not
allowed to hold up the others: its queue is emptied and it gets one
``resync`` event, as every subscriber does after the listener reconnects,
because notifications sent while nobody listened are gone. A subscriber
answers ``resync`` by re-reading a snapshot.

A statement on the hot path may send its own events (``pg_notify`` over
``CHANNEL`` in the statement that writes the state, with ``payloads``): that
saves a round trip per event and keeps the rule, as a notification is only
delivered when its transaction commits. Such events reach this instance's
subscribers through the listener, like any other instance's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from callcenter.db.pool import Conn
from callcenter.runtime import TRANSIENT_DB_ERRORS, Supervisor

_log = logging.getLogger(__name__)

CHANNEL = "callcenter"


@dataclass(frozen=True)
class Event:
    """``kind`` says what changed, ``key`` which one.

    ``queue:<name>``: a call waits there now, or moved (enqueued, returned,
    reordered); ``offered:<name>``: a call came into that queue and the statement
    that enqueued it offered it at once (a change of the queue for whoever shows
    it, but no router needs to run for it: see ``Router.dispatch``);
    ``agent:<id>``: the agent's state changed (its panel is pushed);
    ``free:<id>``: the agent can take a call now; ``customer:<id>``: the
    customer's value or tier may have changed; ``queues``: a queue's
    configuration changed; ``connect:<call id>``: an agent accepted the call,
    the telephony peer must now connect the caller to it, and the accept left the
    claim of that connect to the bridgers (no bridger of its instance commands
    the peer); ``ended:<call id>``:
    the call ended, whatever the outcome and whoever ended it;
    ``release:<call id>``: the call of a telephony peer ended and its end left
    the release at the peer to the releasers to claim (the peer may have to let
    the caller go); ``questions:bank``: the
    learning-question bank or the treatment rules changed (caches of the bank
    reload); ``revoked:<agent id>``: the agent's token was reset or the agent
    removed (sockets opened with the old token close); ``resync``: events may
    have been lost.

    ``data``: what changed, for the one kind whose notification carries it:
    every change of an agent's row is notified by the database itself (a
    trigger, migration 0024) as ``agent:<id>:<snapshot>``, the agent's panel
    as jsonb, so the panel is pushed without a read. The service never
    publishes data; its own ``agent:<id>`` (a change the agent's row does not
    show) makes the panel read.
    """

    kind: str
    key: str = ""
    data: str | None = field(default=None, compare=False, repr=False)

    def encode(self) -> str:
        return f"{self.kind}:{self.key}"

    @classmethod
    def decode(cls, payload: str) -> Event:
        kind, _, key = payload.partition(":")
        if kind in WITH_DATA:
            key, sep, data = key.partition(":")
            return cls(kind, key, data if sep else None)
        return cls(kind, key)


#: The kinds whose notifications may carry data after the key (see ``Event.data``).
WITH_DATA = frozenset({"agent"})


RESYNC = Event("resync")


def payloads(events: Iterable[Event]) -> list[str]:
    """The distinct notification payloads of ``events``, in a stable order."""
    return sorted({e.encode() for e in events})


class Subscription:
    """One subscriber's bounded inbox, for the kinds of event it asked for.

    ``kinds`` None means every kind; ``resync`` always comes through. A
    subscriber that names its kinds is not woken for the others: every call
    sends several events, and most subscribers care about one kind.
    """

    def __init__(self, maxsize: int, kinds: Iterable[str] | None = None) -> None:
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.kinds = None if kinds is None else frozenset(kinds) | {RESYNC.kind}
        self.overflows = 0

    def offer(self, event: Event) -> None:
        if self.kinds is not None and event.kind not in self.kinds:
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            # Too slow to keep up: drop what is queued and ask for a resync.
            self.overflows += 1
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(RESYNC)

    async def get(self) -> Event:
        return await self._queue.get()

    def get_nowait(self) -> Event | None:
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None


class EventBus:
    """Publish events to every instance; deliver the ones that arrive to local subscribers."""

    def __init__(self, dsn: str, *, check_interval: float = 5.0) -> None:
        self._dsn = dsn
        self._check_interval = check_interval
        self._subscribers: set[Subscription] = set()
        #: Runs the listener; restarts it should anything unforeseen end it.
        self.supervisor = Supervisor("event bus", duty="no event reaches this instance")
        self.connected = asyncio.Event()
        self._listened = False
        self.reconnects = 0
        #: The listening connection's backend pid (None while down): for logs and fault tests.
        self.listener_pid: int | None = None
        # (backend pid, payload) published here and delivered locally already.
        self._delivered_early: Counter[tuple[int, str]] = Counter()

    # -- publishing ---------------------------------------------------------

    async def publish(self, conn: Conn, events: Iterable[Event]) -> None:
        """Notify every instance after the state is committed.

        Outside a transaction the state is already committed, so this instance's
        subscribers get the events at once instead of after a trip through the
        server; the copies the listener then receives are recognised by the
        sending backend's pid and dropped. Inside a transaction the notification
        is held until commit, and so is the delivery: it comes through the listener.
        """
        texts = payloads(events)
        if not texts:
            return
        early = not conn.is_in_transaction() and self.connected.is_set()
        pid = conn.get_server_pid()
        if early:
            # Counted before the notify goes out: the listener may receive the
            # copy before this coroutine resumes, and must know to drop it.
            for payload in texts:
                self._delivered_early[(pid, payload)] += 1
        try:
            await conn.execute(
                "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p", CHANNEL, texts
            )
        except BaseException:
            if early:
                for payload in texts:
                    self._forget_early((pid, payload))
            raise
        if early:
            for payload in texts:
                self.deliver(Event.decode(payload))

    # -- subscribing --------------------------------------------------------

    def subscribe(self, maxsize: int = 1000, kinds: Iterable[str] | None = None) -> Subscription:
        """An inbox of at most ``maxsize`` events of ``kinds`` (None: all), plus ``resync``."""
        sub = Subscription(maxsize, kinds)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    def deliver(self, event: Event) -> None:
        """Hand ``event`` to every local subscriber without waiting for any of them."""
        for sub in list(self._subscribers):
            sub.offer(event)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[EventBus]:
        """Listen for the life of the block; waits for the first connection.

        The listener reconnects on its own after a database error; anything
        else that ends it is logged and it is restarted (``supervisor``).
        """
        self.supervisor.start("event-bus-listener", self._listen_forever)
        try:
            await self.connected.wait()
            yield self
        finally:
            await self.supervisor.stop()

    @property
    def failure(self) -> str | None:
        """Whether the listener is down of an unforeseen error (``/readyz`` says so)."""
        return self.supervisor.failure

    # -- the listener ---------------------------------------------------------

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        key = (pid, str(payload))
        if self._delivered_early[key] > 0:
            self._forget_early(key)
            return
        self.deliver(Event.decode(str(payload)))

    def _forget_early(self, key: tuple[int, str]) -> None:
        self._delivered_early[key] -= 1
        if self._delivered_early[key] <= 0:
            del self._delivered_early[key]

    async def _listen_forever(self) -> None:
        delay = 0.1
        # A restarted listener resyncs too: events went by while it was down.
        first = not self._listened
        while True:
            conn: asyncpg.Connection[Any] | None = None
            try:
                conn = await asyncpg.connect(self._dsn)
                lost = asyncio.Event()
                conn.add_termination_listener(_setter(lost))
                await conn.add_listener(CHANNEL, self._on_notify)
                self.listener_pid = conn.get_server_pid()
                self.connected.set()
                self._listened = True
                if not first:
                    self.reconnects += 1
                    _log.warning("event bus listener reconnected; subscribers resync")
                    self._delivered_early.clear()
                    self.deliver(RESYNC)
                first = False
                delay = 0.1
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), self._check_interval)
                    if not lost.is_set():
                        await asyncio.wait_for(conn.fetchval("SELECT 1"), self._check_interval)
            except asyncio.CancelledError:
                raise
            except TRANSIENT_DB_ERRORS as exc:
                self.connected.clear()
                _log.warning("event bus listener lost its connection (%s); retrying", exc)
            except BaseException:
                self.connected.clear()
                raise
            finally:
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 2)
            self.connected.clear()
            self.listener_pid = None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def _setter(flag: asyncio.Event) -> Any:
    """A termination callback that raises ``flag``."""

    def callback(_conn: Any) -> None:
        flag.set()

    return callback
