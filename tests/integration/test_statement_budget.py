"""The statement budget of one call's life (issue 21): what it costs PostgreSQL, counted.

A call is driven through the real path against the suite's real PostgreSQL:
the signed generic webhook ``call.incoming``, the offer on the agent's
``/ws/agent``, the accept with its assist panel and the bridge (the PBX gets
``connect``), the end, the wrap-up with an answer that frees the agent, and
the release. One instance takes it all, as one agent's desk does: the
wrap-up is sent on the socket whose instance built the call's panel, so it
is stored without reading the call first (migration 0026). Every statement
the service sends on its pooled connections (both pools: the durable one and
the router's soft one) is counted by a query logger added to each
connection as the pool opens it, and named by its ``file:name`` in our
``.sql`` files. asyncpg sends ``BEGIN``, ``COMMIT`` and
savepoints as statements of their own, each a round trip, so they are
counted like the rest.

Two endings are driven: the caller hangs up (the PBX's ``call.hangup`` ends
the call, the releaser finds nothing to tell the PBX), and the agent ends the
call (the releaser tells the PBX to hang up). Each step waits for what shows
it is over, never for a time: the socket's ``ack`` and ``state``, the offer,
the panel, and for the work that runs in the background after an event (the
router's dispatch round, the bridger, the releaser) the statement that ends
it (the webhook's call is offered by the enqueue's own statement, migration
0027, and no router round follows it; the wrap-up's statement runs the claim
too, and the test checks that no round was asked for after it,
``Router.wakes``). The releaser's mark of a release carried out is written
with the other marks of its window (``release_marks``): with one call it is
one statement of its own, counted here; at load a call's share of it is a
fraction. The count per step is printed
(``pytest -s``); the test fails when a total grows past its budget, today's
measured figure, so it can only go down.

What is held still, so the figure is the same on every run: a warm-up call
first (asyncpg prepares each statement once per connection, and the bank and
the queue directory are cached after their first read), the router's sweep,
the presence refresh and the telephony catch-ups set far beyond the test's
length, and the measured call in a queue of its own, so its rate reading
(one per queue per second, ``CallDesk._rates``) is counted once, as at any
rate under one call a second per queue.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from callcenter import app_keys
from callcenter.app import create_app
from callcenter.config import Settings
from callcenter.db import pool as db_pool
from callcenter.simulation.distributions import answer_for
from tests.conftest import ADMIN
from tests.integration.queue_helpers import Panel, make_customer, make_queue
from tests.integration.statement_log import StatementLog
from tests.integration.telephony_fakes import GENERIC_SECRET, FakePBX, post_generic
from tests.integration.telephony_helpers import make_agent_with_endpoint

#: Statements (round trips) of opening an agent's socket and going available.
OPEN_BUDGET = 3
#: Statements (round trips) of one call's life, webhook in to release, by its ending.
CALL_BUDGET = {"caller hangs up": 8, "agent ends": 9}


@dataclass
class Service:
    client: TestClient[Any, Any]
    pbx: FakePBX
    app: web.Application
    token: str
    customer_id: int


@pytest.fixture
async def service(
    counted: StatementLog,
    settings: Settings,
    db_url: str,
    aiohttp_client: Callable[[web.Application], Awaitable[TestClient[Any, Any]]],
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> AsyncIterator[Service]:
    pbx = FakePBX()
    pbx_server = await aiohttp_server(pbx.app(), host="127.0.0.1")
    pool = await db_pool.create_pool(db_url, min_size=1, max_size=8)
    try:
        quiet = settings.model_copy(
            update={
                "generic_webhook_secret": SecretStr(GENERIC_SECRET),
                "generic_callback_url": str(pbx_server.make_url("/pbx/commands")),
                # No clock work inside the test: sweeps, presence, catch-ups, retention.
                "sweep_seconds": 3600.0,
                "agent_grace_seconds": 3600.0,
                "agent_heartbeat_seconds": 3600.0,
                "retention_hour": (datetime.now(UTC).hour + 12) % 24,
            }
        )
        app = create_app(quiet, pool=pool)
        client = await aiohttp_client(app)
        client.session.headers.update(ADMIN)
        await make_queue(client, "warmup")
        await make_queue(client, "measured")
        customer_id = await make_customer(client, "C-21", 30000, "+12125550100")
        _, token = await make_agent_with_endpoint(
            client, "ada", "sip:ada@pbx.example", ["warmup", "measured"]
        )
        yield Service(client, pbx, app, token, customer_id)
        await client.close()
    finally:
        await pool.close()


def _incoming(call_id: str, queue: str) -> bytes:
    event = {"type": "call.incoming", "call_id": call_id, "queue": queue}
    return json.dumps(event | {"from": "(212) 555-0100", "to": "+14155550100"}).encode()


def _hangup(call_id: str) -> bytes:
    return json.dumps({"type": "call.hangup", "call_id": call_id, "cause": "normal"}).encode()


def _is(kind: str, **fields: Any) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m["type"] == kind and all(m.get(k) == v for k, v in fields.items())


def _state(agent_state: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m["type"] == "state" and m["agent"]["state"] == agent_state


Wanted = Callable[[dict[str, Any]], bool]


async def _all(panel: Panel, *wanted: Wanted) -> list[dict[str, Any]]:
    """The first message matching each of ``wanted``, in whatever order they come (a
    push caused by a message may overtake that message's ``ack``)."""
    found: list[dict[str, Any] | None] = [None] * len(wanted)
    while any(f is None for f in found):
        message = await panel.until(
            lambda m: any(f is None and w(m) for f, w in zip(found, wanted, strict=True))
        )
        i = next(i for i, w in enumerate(wanted) if found[i] is None and w(message))
        found[i] = message
    return [f for f in found if f is not None]


async def _open(service: Service, log: StatementLog) -> Panel:
    """Open the agent's socket and go available: the per-session steps."""
    log.step = "open the socket"
    panel = await Panel.open(service.client, service.token)
    await panel.until(_is("state"))
    log.step = "available"
    router = service.app[app_keys.ROUTER]
    wakes = router.wakes
    await panel.send(type="available", ref="available")
    await _all(panel, _is("ack", to="available"), _state("available"))
    # Its statement ran the router's claim itself (nobody waits): no round follows.
    assert router.wakes == wakes, "a router round followed going available"
    return panel


async def _call(service: Service, log: StatementLog, panel: Panel, name: str, ending: str) -> None:
    """One call's whole life, step by step, each step over before the next begins."""
    queue = "measured" if name == "measured" else "warmup"
    log.step = "webhook in → offer on the socket"
    status, reply = await post_generic(service.client, _incoming(name, queue))
    assert status == 200 and reply["action"] == "wait", reply
    # The enqueue's own claim made the offer (migration 0027): no router round follows.
    offer = await panel.until(_is("offer"))

    log.step = "accept → panel, bridge"
    connects = len(service.pbx.commands)
    await panel.send(type="accept", offer_id=offer["offer_id"], ref="accept")
    ack, shown = await _all(panel, _is("ack", to="accept"), _is("panel"))
    call_id = ack["call_id"]
    assert shown["call_id"] == call_id
    await log.until("telephony_adapters/queries:bridge_connected")
    assert service.pbx.commands[connects]["action"] == "connect"
    question = shown["question"]
    assert question is not None, "the shipped bank has a question for this caller"

    if ending == "caller hangs up":
        log.step = "hang-up event → wrap-up state, release not needed"
        status, done = await post_generic(service.client, _hangup(name))
        assert status == 200 and done["call"]["state"] == "completed", done
        await panel.until(_state("wrap_up"))
        # The end recorded the release as not needed in its own statement: no releaser
        # has anything to claim (a claim would be counted in the next step).
    else:
        log.step = "agent ends → wrap-up state, PBX told to hang up"
        await panel.send(type="end", call_id=call_id, ref="end")
        await _all(panel, _is("ack", to="end"), _state("wrap_up"))
        await log.until("telephony_adapters/queries:release_done")
        assert service.pbx.commands[-1] == {"action": "hangup", "call_id": name}

    log.step = "wrap-up with an answer → available"
    value = answer_for(random.Random(21), question)
    assert value is not None
    router = service.app[app_keys.ROUTER]
    wakes = router.wakes
    await panel.send(
        type="wrap_up",
        call_id=call_id,
        notes="asked about fees",
        answer={"question_key": question["key"], "value": value},
        ref="wrap_up",
    )
    await _all(panel, _is("ack", to="wrap_up"), _state("available"))
    # The wrap-up's statement ran the router's claim itself and nothing moved in the
    # queue meanwhile: no round was asked for (``Router.freed``), so none follows.
    assert router.wakes == wakes, "a router round followed the wrap-up"


async def _stored(db_url: str, external: str) -> asyncpg.Record:
    """What the measured call left behind, read on a connection of the test's own."""
    conn = await asyncpg.connect(db_url)
    try:
        row: asyncpg.Record | None = await conn.fetchrow(
            """SELECT c.state, c.wrapped_up_at IS NOT NULL AS wrapped, i.notes,
                      a.question_key, a.value, cu.needs ? a.question_key AS in_needs,
                      r.state AS released
                 FROM calls c
                 JOIN interactions i ON i.id = c.interaction_id
                 LEFT JOIN answers a ON a.call_id = c.id
                 LEFT JOIN customers cu ON cu.id = c.customer_id
                 LEFT JOIN call_releases r ON r.call_id = c.id
                WHERE c.external_id = $1""",
            f"generic:{external}",
        )
    finally:
        await conn.close()
    assert row is not None
    return row


@pytest.mark.parametrize("ending", list(CALL_BUDGET))
async def test_a_calls_life_stays_within_its_statement_budget(
    service: Service, counted: StatementLog, ending: str, db_url: str
) -> None:
    # Warm-up: the same life once, unmeasured (prepared statements, caches).
    panel = await _open(service, counted)
    await _call(service, counted, panel, "warmup-1", ending)
    await panel.send(type="offline", ref="offline")
    await _all(panel, _is("ack", to="offline"), _state("offline"))
    await panel.close()
    bank = service.app[app_keys.BANK_CACHE]
    bank.invalidate()
    counted.step = "setup"
    await bank.get()  # the bank read now, not in the middle of the measured call

    counted.begin()
    panel = await _open(service, counted)
    opening = list(dict.fromkeys(s for s, _ in counted.seen[counted.start :]))
    await _call(service, counted, panel, "measured", ending)
    await panel.close()

    steps = list(dict.fromkeys(s for s, _ in counted.seen[counted.start :]))
    life = [s for s in steps if s not in opening]
    opened, used = counted.total(opening), counted.total(life)
    assert counted.of(life[0])["queue/queries:enqueue"] == 1, "the counting saw the call"
    # Fewer round trips, the same call: ended, wrapped up with its notes and answer.
    stored = await _stored(db_url, "measured")
    assert stored["state"] == "completed" and stored["wrapped"], dict(stored)
    assert stored["notes"] == "asked about fees" and stored["question_key"] is not None
    assert stored["in_needs"] and stored["released"] is not None, dict(stored)
    print(f"\nstatements, {ending}: socket {opened}, call {used}\n{counted.report(steps)}")
    assert opened <= OPEN_BUDGET, f"opening a socket took {opened} statements:\n" + (
        counted.report(opening)
    )
    assert used <= CALL_BUDGET[ending], f"one call took {used} statements:\n" + (
        counted.report(life)
    )
