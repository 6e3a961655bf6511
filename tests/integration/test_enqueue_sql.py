"""The server-side pieces of a new call's round trips (migration 0023), and their twins.

The enqueue statement counts the calls ahead and stores the estimated wait
itself, with ``queue_estimated_wait``; every other estimate (a call read back,
the queue's list, the dashboard) comes from ``ewt.wait_for``. If the two ever
disagreed, the wait told at enqueue would not be the one read a moment later,
so they are compared here on many random inputs and on the edges, on the real
server, to the last bit. ``identify_candidates`` has two readers, the
customers room's statement and the telephony gateway's first look-up of an
incoming call: both are held to the same answers.
"""

from __future__ import annotations

import random
from typing import Any

import asyncpg

from callcenter.customers import store as customer_store
from callcenter.queue.ewt import wait_for
from callcenter.queue.sql import Q
from callcenter.telephony_adapters.sql import Q as TQ
from tests.conftest import AppFactory
from tests.integration.queue_helpers import FAST, enqueue, make_customer, make_queue


def _inputs(rng: random.Random, n: int) -> list[tuple[int, int, int, float | None]]:
    """Calls ahead, staffed, available and a rate (None, or positive) of every kind:
    nobody staffed, more agents free than calls ahead, tiny and huge rates, fractions
    whose division is inexact."""
    out: list[tuple[int, int, int, float | None]] = []
    for _ in range(n):
        ahead = rng.choice([0, 1, rng.randrange(100), rng.randrange(10**7)])
        staffed = rng.choice([0, -1, 1, rng.randrange(500)])
        available = rng.choice([0, staffed, rng.randrange(max(staffed, 1) + 1), ahead + 1])
        rate = rng.choice(
            [
                None,
                rng.uniform(1e-9, 1e-3),
                rng.uniform(0.001, 50.0),
                rng.randrange(1, 1000) / 7,
                1e-7,  # a day's handling time and one agent is ~1e-5
                1e6,
            ]
        )
        out.append((ahead, staffed, available, rate))
    return out


async def test_the_sql_estimate_and_its_python_twin_agree(pool: asyncpg.Pool[Any]) -> None:
    inputs = _inputs(random.Random(20261205), 20_000)
    rows = await pool.fetch(
        """SELECT queue_estimated_wait(a, s, f, r) AS ewt
             FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::float8[])
                  WITH ORDINALITY AS t (a, s, f, r, i)
            ORDER BY i""",
        [a for a, _, _, _ in inputs],
        [s for _, s, _, _ in inputs],
        [f for _, _, f, _ in inputs],
        [r for _, _, _, r in inputs],
    )
    assert len(rows) == len(inputs)
    wrong = [
        (i, r["ewt"], wait_for(*i))
        for i, r in zip(inputs, rows, strict=True)
        if r["ewt"] != wait_for(*i)
    ]
    assert wrong == []
    # Every branch was met: unknown, zero and a number.
    seen = [wait_for(*i) for i in inputs]
    assert None in seen and 0.0 in seen and any(s not in (None, 0.0) for s in seen)


async def test_the_enqueue_stores_the_estimate_it_answers(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    """The answer's position and estimate are the statement's own count and estimate."""
    client = await app_factory(**FAST)
    await make_queue(client, "general")
    answers = [(await enqueue(client, f"pbx-{i}"))["call"] for i in range(3)]
    assert [a["position"] for a in answers] == [1, 2, 3]
    for answer in answers:
        stored = await pool.fetchval("SELECT ewt_at_enqueue FROM calls WHERE id = $1", answer["id"])
        assert stored == answer["ewt_at_enqueue"] == answer["estimated_wait_seconds"]


_CANDIDATE = ("matched", "id", "customer_number", "name", "tier", "provisional")


async def test_the_gateways_first_look_up_reads_the_same_candidates(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    """``peer_call_identify`` (an incoming's one look-up) and ``known_call_identify`` (the
    API's) answer the candidates the customers room's own ``identify_candidates`` does,
    with the call (and the tombstone)."""
    client = await app_factory(**FAST)
    shared = "+12125550100"
    first = await make_customer(client, "C-1", 100, shared)
    second = await make_customer(client, "C-2", 20_000, "+12125550102")
    await make_customer(client, "C-3", 300, "+12125550199")
    merged = await make_customer(client, "C-4", 300, "+12125550104")
    for other in (second, merged):  # a household's number, and a record merged since
        await pool.execute(customer_store.Q["link_phone"], shared, other, "linked", "test")
    await pool.execute("UPDATE customers SET merged_into = $1 WHERE id = $2", first, merged)
    await pool.execute(
        "INSERT INTO telephony_tombstones (external_id, cause) VALUES ('generic:gone', 'x')"
    )
    stored = (await enqueue(client, "generic:stored"))["call"]["id"]
    calls = {"generic:new": None, "generic:gone": None, "generic:stored": stored}
    phones = [shared, "+12125550199", "+12125550111", None]
    for phone in phones:
        for typed in ["C-1", "C-3", "C-4", "nobody", None]:
            own = await pool.fetch(customer_store.Q["identify_candidates"], phone, typed)
            expected = sorted(tuple(r[k] for k in _CANDIDATE) for r in own)
            for ext, call_id in calls.items():
                rows = await pool.fetch(TQ["peer_call_identify"], ext, phone, typed)
                api = await pool.fetch(Q["known_call_identify"], ext, phone, typed)
                assert {r["gone"] for r in rows} == {ext == "generic:gone"}
                for look_up in (rows, api):
                    assert len(look_up) == max(1, len(own))
                    found = sorted(tuple(r[k] for k in _CANDIDATE) for r in look_up if r["matched"])
                    assert found == expected, (ext, phone, typed)
                    assert {r["call_id"] for r in look_up} == {call_id}
    # The merged record is nobody's candidate; the household's two are.
    household = await pool.fetch(customer_store.Q["identify_candidates"], shared, None)
    assert len(household) == 2 and merged not in {r["id"] for r in household}


async def test_the_first_look_ups_say_which_phone_candidate_has_a_callback_waiting(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    """``callback_waiting`` (migration 0028) is true for a phone candidate with a call
    waiting for its callback, and only then: not for a typed number's candidate, not
    for a plain waiting call, not once that call has ended. A new call takes the
    takeover's lock (a transaction of its own) only when it is true."""
    client = await app_factory(**FAST)
    phone = "+12125550160"
    waiting_for_callback = await make_customer(client, "C-60", 100, phone)
    other = await make_customer(client, "C-61", 100, "+12125550161")
    held = (await enqueue(client, "api:held", ani=phone))["call"]["id"]
    await enqueue(client, "api:plain", ani="+12125550161")

    async def flags(typed: str | None = None) -> dict[tuple[str, int], bool]:
        found: dict[tuple[str, int], bool] = {}
        for statement in (TQ["peer_call_identify"], Q["known_call_identify"]):
            for p in (phone, "+12125550161"):
                for r in await pool.fetch(statement, "api:new", p, typed):
                    key = (r["matched"], r["id"])
                    assert found.get(key, r["callback_waiting"]) == r["callback_waiting"]
                    found[key] = r["callback_waiting"]
        return found

    assert await flags() == {("phone", waiting_for_callback): False, ("phone", other): False}
    await pool.execute(
        "UPDATE calls SET callback_number = $1, callback_requested_at = now() WHERE id = $2",
        phone,
        held,
    )
    assert await flags("C-60") == {
        ("phone", waiting_for_callback): True,
        ("customer_number", waiting_for_callback): False,
        ("phone", other): False,
    }
    await pool.execute("UPDATE calls SET state = 'abandoned', ended_at = now() WHERE id = $1", held)
    assert await flags() == {("phone", waiting_for_callback): False, ("phone", other): False}
