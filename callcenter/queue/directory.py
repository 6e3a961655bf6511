"""The configured queues, cached in process and re-read when a queue changes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from callcenter.db.pool import Conn
from callcenter.errors import NotFound, Unprocessable
from callcenter.queue.models import Queue, QueueConfig
from callcenter.queue.policy import QueuePolicy, make_policy
from callcenter.queue.sql import Q


class QueueDirectory:
    """Queue configs by name. A name not in the cache triggers one re-read, so a
    queue created on another instance is found; ``invalidate`` follows the
    ``queues`` event that every change publishes."""

    def __init__(self, tiers: Sequence[str]) -> None:
        self._tiers = tuple(tiers)
        self._queues: dict[str, Queue] | None = None

    def invalidate(self) -> None:
        self._queues = None

    async def all(self, conn: Conn) -> list[Queue]:
        if self._queues is None:
            rows = await conn.fetch(Q["queue_configs"])
            self._queues = {r["name"]: Queue.model_validate(dict(r)) for r in rows}
        return list(self._queues.values())

    async def get(self, conn: Conn, name: str, *, field: str = "queue") -> Queue:
        await self.all(conn)
        assert self._queues is not None
        if name not in self._queues:
            self.invalidate()
            await self.all(conn)
        found = self._queues.get(name)
        if found is None:
            raise NotFound(f"no queue named {name!r}", field=field)
        return found

    async def require(self, conn: Conn, name: str, *, field: str) -> Queue:
        """A queue named in a request body: an unknown one is bad input (422), not a 404."""
        try:
            return await self.get(conn, name, field=field)
        except NotFound as exc:
            raise Unprocessable(exc.detail, field=field) from None

    def policy(self, queue: QueueConfig) -> QueuePolicy:
        return make_policy(queue.policy, queue.credits, self._tiers)

    async def put(self, conn: Conn, name: str, config: QueueConfig) -> bool:
        """Create or replace a queue's config; True if it was created."""
        await self._check_overflow(conn, name, config.overflow_queue)
        self._check_credits(config.credits)
        self._check_callback_tiers(config)
        created: bool = await conn.fetchval(
            Q["upsert_queue"],
            name,
            config.policy.value,
            config.credits,
            config.offset_seconds,
            config.offer_timeout_seconds,
            config.wrap_up_seconds,
            config.overflow_after_seconds,
            config.max_wait_seconds,
            config.overflow_queue,
            config.service_level_seconds,
            config.wrap_up_max_seconds,
            config.callback.model_dump() if config.callback is not None else None,
            config.redial_window_seconds,
        )
        self.invalidate()
        return created

    async def _check_overflow(self, conn: Conn, name: str, target: str | None) -> None:
        """The overflow target exists and its chain never leads back here (no ping-pong)."""
        seen = {name}
        while target is not None:
            if target in seen:
                raise Unprocessable(
                    f"overflowing into {target!r} would lead back to {name!r}",
                    field="overflow_queue",
                )
            seen.add(target)
            target = (await self.require(conn, target, field="overflow_queue")).overflow_queue

    def _check_callback_tiers(self, config: QueueConfig) -> None:
        if config.callback is None or config.callback.tiers is None:
            return
        unknown = set(config.callback.tiers) - {*self._tiers, "unknown"}
        if unknown:
            raise Unprocessable(
                f"unknown tier(s) in callback.tiers: {', '.join(sorted(unknown))}; "
                f"known: {', '.join((*self._tiers, 'unknown'))}",
                field="callback.tiers",
            )

    def _check_credits(self, credits: Mapping[str, float]) -> None:
        """Known tiers, and a more valuable tier never gets less credit (a missing one: 0)."""
        unknown = set(credits) - set(self._tiers)
        if unknown:
            raise Unprocessable(
                f"unknown tier(s) in credits: {', '.join(sorted(unknown))}; "
                f"known: {', '.join(self._tiers)}",
                field="credits",
            )
        if not credits:
            return
        ranked = [credits.get(t, 0.0) for t in self._tiers]
        for better, worse, value, lower in zip(
            self._tiers, self._tiers[1:], ranked, ranked[1:], strict=False
        ):
            if value < lower:
                raise Unprocessable(
                    f"credits must not grow as value falls: {better} has {value:g} s, "
                    f"{worse} has {lower:g} s",
                    field="credits",
                )
