"""Identify on the real database: every outcome of ``resolve`` and what it writes."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any, TypeAlias

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from callcenter.customers import identity, store
from callcenter.customers.models import CustomerIn, Outcome, Resolution
from callcenter.customers.store import CustomerRules
from callcenter.db.pool import create_pool

Pool: TypeAlias = "asyncpg.Pool[Any]"
E164 = "+12125550100"


async def _resolve(
    pool: Pool, rules: CustomerRules, ani: str | None, number: str | None = None
) -> Resolution:
    async with pool.acquire() as conn:
        return await identity.resolve(
            conn, ani, number, region=rules.region, lowest_tier=rules.lowest_tier
        )


async def _customer(
    pool: Pool,
    rules: CustomerRules,
    number: str,
    *phones: str,
    value: int = 0,
    shared: bool = False,
) -> int:
    data = CustomerIn(
        customer_number=number,
        phones=list(phones),
        shared_phones=list(phones) if shared else [],
        lifetime_value=Decimal(value),
    )
    async with pool.acquire() as conn:
        return (await store.create_customer(conn, data, rules)).id


async def _count(pool: Pool, sql: str, *args: Any) -> int:
    async with pool.acquire() as conn:
        n: int = await conn.fetchval(sql, *args)
        return n


async def _phone_rows(pool: Pool, phone: str) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return await conn.fetch(
            "SELECT customer_id, source, linked_at, linked_via FROM customer_phones"
            " WHERE phone_e164 = $1 ORDER BY customer_id",
            phone,
        )


@pytest.mark.parametrize(
    "ani", ["(212) 555-0100", "+1 212-555-0100", "001 212 555 0100", "12125550100"]
)
async def test_every_spelling_of_a_number_is_known_by_phone(
    pool: Pool, rules: CustomerRules, ani: str
) -> None:
    assert rules.region == "US"
    ada = await _customer(pool, rules, "C1", "+1 (212) 555 0100")
    got = await _resolve(pool, rules, ani)
    assert got.outcome is Outcome.known
    assert got.matched_by == "phone"
    assert got.phone == E164
    assert got.customer is not None and got.customer.id == ada
    assert await _count(pool, "SELECT count(*) FROM customers") == 1


@pytest.mark.parametrize("ani", ["anonymous", "restricted", "unknown", "", "12", None])
async def test_withheld_or_invalid_caller_never_matches_creates_or_links(
    pool: Pool, rules: CustomerRules, ani: str | None
) -> None:
    ada = await _customer(pool, rules, "C1", E164)

    alone = await _resolve(pool, rules, ani)
    assert alone.outcome is Outcome.unknown
    assert alone.customer is None and alone.phone is None and alone.matched_by is None

    typed = await _resolve(pool, rules, ani, "C1")
    assert typed.outcome is Outcome.known
    assert typed.matched_by == "customer_number"
    assert typed.customer is not None and typed.customer.id == ada

    nobody = await _resolve(pool, rules, ani, "NO-SUCH")
    assert nobody.outcome is Outcome.unknown
    assert nobody.customer is None and nobody.customer_number_not_found

    assert await _count(pool, "SELECT count(*) FROM customers") == 1
    assert await _count(pool, "SELECT count(*) FROM customer_phones") == 1
    assert await _count(pool, "SELECT count(*) FROM identity_conflicts") == 0


async def test_typed_number_from_unknown_phone_serves_this_call_and_links_nothing(
    pool: Pool, rules: CustomerRules
) -> None:
    ada = await _customer(pool, rules, "C1", "+1 212 555 0100")
    got = await _resolve(pool, rules, "+44 20 7946 0018", "C1")
    assert got.outcome is Outcome.pending
    assert got.matched_by == "customer_number"
    assert got.customer is not None and got.customer.id == ada
    assert identity.recognised_by(got) == "pending"
    assert await _phone_rows(pool, "+442079460018") == []

    # The next call from that phone is not theirs: it is a new caller.
    again = await _resolve(pool, rules, "0044 20 7946 0018")
    assert again.outcome is Outcome.unknown
    assert again.customer is not None and again.customer.id != ada
    assert again.customer.provisional


async def test_a_confirmed_link_links_the_phone_with_who_confirmed_it(
    pool: Pool, rules: CustomerRules
) -> None:
    ada = await _customer(pool, rules, "C1", "+1 212 555 0100")
    async with pool.acquire() as conn, conn.transaction():
        assert await identity.confirm_link(conn, "+442079460018", ada, via="verified by agent:x")
    [row] = await _phone_rows(pool, "+442079460018")
    assert row["customer_id"] == ada
    assert row["source"] == "linked"
    assert row["linked_at"] is not None
    assert row["linked_via"] == "verified by agent:x"
    again = await _resolve(pool, rules, "0044 20 7946 0018")
    assert again.outcome is Outcome.known and again.matched_by == "phone"
    assert again.customer is not None and again.customer.id == ada

    # A phone someone else has by the time of the confirmation stays theirs.
    bob = await _customer(pool, rules, "C2", "+1 646 555 0199")
    async with pool.acquire() as conn, conn.transaction():
        assert not await identity.confirm_link(conn, "+16465550199", ada, via="verified by x")
    assert [r["customer_id"] for r in await _phone_rows(pool, "+16465550199")] == [bob]


async def test_conflict_serves_the_typed_number_and_records_it(
    pool: Pool, rules: CustomerRules, client: TestClient[Any, Any]
) -> None:
    a = await _customer(pool, rules, "A1", E164)
    b = await _customer(pool, rules, "B1", "+1 646 555 0199")

    got = await _resolve(pool, rules, "(212) 555-0100", "B1")
    assert got.outcome is Outcome.conflict
    assert got.customer is not None and got.customer.id == b
    assert [c.id for c in got.candidates] == [a]
    assert got.conflict_id is not None

    resp = await client.get("/api/identity/conflicts")
    assert resp.status == 200
    [conflict] = (await resp.json())["conflicts"]
    assert conflict["id"] == got.conflict_id
    assert conflict["phone"] == E164
    assert conflict["phone_customer_ids"] == [a]
    assert conflict["typed_customer_id"] == b
    assert conflict["customer_number"] == "B1"
    for_b = await (await client.get(f"/api/identity/conflicts?customer_id={b}")).json()
    assert [c["id"] for c in for_b["conflicts"]] == [got.conflict_id]

    assert [r["customer_id"] for r in await _phone_rows(pool, E164)] == [a]
    again = await _resolve(pool, rules, E164)
    assert again.outcome is Outcome.known and again.customer is not None
    assert again.customer.id == a


async def test_shared_phone_is_multiple_until_a_number_is_typed(
    pool: Pool, rules: CustomerRules
) -> None:
    a = await _customer(pool, rules, "H1", E164)
    b = await _customer(pool, rules, "H2", "212-555-0100", shared=True)

    got = await _resolve(pool, rules, "+1 212 555 0100")
    assert got.outcome is Outcome.multiple
    assert got.customer is None
    assert sorted(c.id for c in got.candidates) == [a, b]

    typed = await _resolve(pool, rules, "+1 212 555 0100", "H2")
    assert typed.outcome is Outcome.known
    assert typed.customer is not None and typed.customer.id == b
    assert typed.candidates == []
    assert await _count(pool, "SELECT count(*) FROM identity_conflicts") == 0
    assert await _count(pool, "SELECT count(*) FROM customers") == 2


async def test_unknown_phone_gets_one_provisional_customer(
    pool: Pool, rules: CustomerRules
) -> None:
    first = await _resolve(pool, rules, "(415) 555-0132")
    assert first.outcome is Outcome.unknown
    assert first.customer is not None and first.customer.provisional
    assert first.customer.tier == rules.lowest_tier
    assert first.customer.customer_number is None

    [row] = await _phone_rows(pool, "+14155550132")
    assert row["customer_id"] == first.customer.id
    assert row["source"] == "provisional"

    second = await _resolve(pool, rules, "+1 415 555 0132")
    assert second.outcome is Outcome.known and second.matched_by == "phone"
    assert second.customer is not None and second.customer.id == first.customer.id
    assert await _count(pool, "SELECT count(*) FROM customers WHERE provisional") == 1


async def test_provisional_caller_typing_a_real_number_is_merged_once_confirmed(
    pool: Pool, rules: CustomerRules, client: TestClient[Any, Any]
) -> None:
    real = await _customer(pool, rules, "C9", "+1 646 555 0199")
    first = await _resolve(pool, rules, "(415) 555-0132")
    assert first.customer is not None
    provisional = first.customer.id
    async with pool.acquire() as conn:
        interaction = await conn.fetchval(
            "INSERT INTO interactions (customer_id, notes) VALUES ($1, 'first call') RETURNING id",
            provisional,
        )

    got = await _resolve(pool, rules, "415 555 0132", "C9")
    assert got.outcome is Outcome.pending
    assert got.customer is not None and got.customer.id == real
    # Nothing merged or linked on the typed number's word.
    assert [r["customer_id"] for r in await _phone_rows(pool, "+14155550132")] == [provisional]
    unconfirmed = await _resolve(pool, rules, "+1 415 555 0132")
    assert unconfirmed.customer is not None and unconfirmed.customer.id == provisional

    async with pool.acquire() as conn, conn.transaction():
        assert await identity.confirm_link(conn, "+14155550132", real, via="verified by agent:x")
    async with pool.acquire() as conn:
        merged_into = await conn.fetchval(
            "SELECT merged_into FROM customers WHERE id = $1", provisional
        )
        owner = await conn.fetchval(
            "SELECT customer_id FROM interactions WHERE id = $1", interaction
        )
    assert merged_into == real
    assert owner == real
    [row] = await _phone_rows(pool, "+14155550132")
    assert row["customer_id"] == real
    assert row["source"] == "linked"
    # The link is written before the merge moves the phone, so it says who confirmed it.
    assert row["linked_via"] == "verified by agent:x"

    hist = await (await client.get(f"/api/customers/{real}/history")).json()
    assert [i["id"] for i in hist["interactions"]] == [interaction]
    gone = await (await client.get("/api/customers?phone=%2B14155550132")).json()
    assert [c["id"] for c in gone["customers"]] == [real]
    listed = await (await client.get("/api/customers")).json()
    assert provisional not in [c["id"] for c in listed["customers"]]

    again = await _resolve(pool, rules, "+1 415 555 0132")
    assert again.outcome is Outcome.known and again.customer is not None
    assert again.customer.id == real


async def test_typed_number_nobody_has(pool: Pool, rules: CustomerRules) -> None:
    ada = await _customer(pool, rules, "C1", E164)

    from_known = await _resolve(pool, rules, E164, "NOPE-1")
    assert from_known.outcome is Outcome.known and from_known.matched_by == "phone"
    assert from_known.customer is not None and from_known.customer.id == ada
    assert from_known.customer_number_not_found

    from_new = await _resolve(pool, rules, "+1 415 555 0132", "NOPE-1")
    assert from_new.outcome is Outcome.unknown
    assert from_new.customer is not None and from_new.customer.provisional
    assert from_new.customer_number_not_found
    assert await _count(pool, "SELECT count(*) FROM identity_conflicts") == 0
    assert (
        await _count(pool, "SELECT count(*) FROM customers WHERE customer_number = 'NOPE-1'") == 0
    )


async def test_concurrent_first_calls_create_one_provisional(
    db_url: str, pool: Pool, rules: CustomerRules
) -> None:
    wide = await create_pool(db_url, min_size=10, max_size=10)
    try:
        conns = [await wide.acquire() for _ in range(10)]
        try:
            results = await asyncio.gather(
                *(
                    identity.resolve(
                        c,
                        "+1 415 555 0132",
                        None,
                        region=rules.region,
                        lowest_tier=rules.lowest_tier,
                    )
                    for c in conns
                )
            )
        finally:
            for c in conns:
                await wide.release(c)
    finally:
        await wide.close()

    ids = {r.customer.id for r in results if r.customer is not None}
    assert len(ids) == 1 and all(r.customer is not None for r in results)
    assert sorted(r.outcome for r in results) == [Outcome.known] * 9 + [Outcome.unknown]
    assert await _count(pool, "SELECT count(*) FROM customers") == 1
    assert [r["customer_id"] for r in await _phone_rows(pool, "+14155550132")] == list(ids)


async def test_pinned_tier_is_the_tier_identify_reports(pool: Pool, rules: CustomerRules) -> None:
    ada = await _customer(pool, rules, "C1", E164, value=30000)
    before = await _resolve(pool, rules, E164)
    assert before.customer is not None and before.customer.tier == "platinum"

    async with pool.acquire() as conn:
        await store.pin_tier(conn, ada, "silver", "complaint", "sup-ann", rules)
    pinned = await _resolve(pool, rules, E164)
    assert pinned.customer is not None and pinned.customer.tier == "silver"
    by_number = await _resolve(pool, rules, None, "C1")
    assert by_number.customer is not None and by_number.customer.tier == "silver"
