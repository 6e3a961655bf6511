"""Customers' data rights: export everything, erase identifiers and free text, retention."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import asyncpg

from callcenter import app_keys
from callcenter.customers import privacy
from tests.conftest import AppFactory
from tests.integration.privacy_helpers import (
    EMAIL,
    NAME,
    NEEDLES,
    NOTES,
    NUMBER,
    PHONE,
    PIN_REASON,
    TEXT_ANSWER,
    Client,
    seed,
    where_found,
)
from tests.integration.queue_helpers import FAST, enqueue, waits_behind

Json = dict[str, Any]


async def _ok(resp: Any, status: int = 200) -> Json:
    assert resp.status == status, await resp.text()
    body: Json = await resp.json()
    return body


async def _statistics(conn: asyncpg.Connection[Any], customer_id: int) -> list[tuple[Any, ...]]:
    """What service levels are computed from: per call its queue, state, tier and waits."""
    rows = await conn.fetch(
        "SELECT k.id, k.queue, k.state, k.tier, k.end_reason, k.enqueued_at, k.connected_at,"
        " k.ended_at, i.outcome, i.details"
        " FROM calls k LEFT JOIN interactions i ON i.id = k.interaction_id"
        " WHERE k.customer_id = $1 ORDER BY k.id",
        customer_id,
    )
    return [tuple(r.values()) for r in rows]


async def test_the_export_holds_everything_seeded(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**FAST, questions_file=None)
    seeded = await seed(client, pool)
    doc = await _ok(await client.get(f"/api/customers/{seeded.customer_id}/export"))
    customer = doc["customer"]
    assert (customer["name"], customer["email"], customer["customer_number"]) == (
        NAME,
        EMAIL,
        NUMBER,
    )
    assert [p["number"] for p in customer["phones"]] == [PHONE]
    assert customer["pin"]["reason"] == PIN_REASON
    assert customer["needs"] == {"saving_for": TEXT_ANSWER}
    assert [h["notes"] for h in doc["history"]] == ["second call, nothing new", NOTES]
    assert [c["id"] for c in doc["calls"]] == list(reversed(seeded.call_ids))
    assert {c["ani"] for c in doc["calls"]} == {PHONE}
    assert {c["agent"] for c in doc["calls"]} == {"ada"}
    [answer] = doc["answers"]
    assert (answer["question_key"], answer["value"]) == ("saving_for", TEXT_ANSWER)
    assert answer["call_id"] == seeded.call_ids[0]
    conflicts = {(c["phone"], c["typed_customer_id"]) for c in doc["identity_conflicts"]}
    assert conflicts == {(PHONE, seeded.other_id), ("+12125550188", seeded.customer_id)}
    assert [e["action"] for e in reversed(doc["audit"])] == [
        "create",
        "pin_tier",
        "panel",
        "wrap_up",
        "panel",
        "wrap_up",
    ]
    # The export is itself a read of the record.
    log = await _ok(await client.get(f"/api/audit?customer={seeded.customer_id}&limit=1"))
    assert log["entries"][0]["action"] == "export"
    assert log["entries"][0]["who"] == "admin:bootstrap"
    document = await _ok(await client.get("/openapi.json"))
    assert "CustomerExport" in document["components"]["schemas"]


async def test_erase_removes_every_identifier_and_keeps_the_statistics(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**FAST, questions_file=None)
    seeded = await seed(client, pool)
    async with pool.acquire() as conn:
        before = await _statistics(conn, seeded.customer_id)
        for needle in NEEDLES:
            assert await where_found(conn, needle), needle  # the search finds what is there
    erased = await _ok(await client.post(f"/api/customers/{seeded.customer_id}/erase"))
    assert erased["already_erased"] is False
    assert (erased["phones"], erased["notes"], erased["text_answers"]) == (1, 2, 1)
    assert (erased["calling_numbers"], erased["conflicts"]) == (2, 2)
    assert erased["customer_number"].startswith("erased-")

    async with pool.acquire() as conn:
        for needle in NEEDLES:
            assert await where_found(conn, needle) == [], needle
        assert await _statistics(conn, seeded.customer_id) == before
        # The other customer keeps everything of theirs.
        other = await conn.fetchrow(
            "SELECT name, customer_number FROM customers WHERE id = $1", seeded.other_id
        )
        assert tuple(other) == ("Other Person", "C-OTHER")
        assert await where_found(conn, "+12125550188") == ["customer_phones.phone_e164"]
        # Rows stay: the contacts, the answer and the pinned tier, without their text.
        assert await conn.fetchval(
            "SELECT count(*) FROM interactions WHERE customer_id = $1", seeded.customer_id
        ) == len(seeded.call_ids)
        row = await conn.fetchrow(
            "SELECT pinned_tier, computed_tier, erased_at FROM customers WHERE id = $1",
            seeded.customer_id,
        )
        assert row["pinned_tier"] == "gold" and row["erased_at"] is not None

    # The record reads as anonymous; the log keeps the ids and actions, with who erased.
    shown = await _ok(await client.get(f"/api/customers/{seeded.customer_id}"))
    assert (shown["name"], shown["email"], shown["phones"]) == ("", None, [])
    assert shown["customer_number"] == erased["customer_number"]
    log = await _ok(await client.get(f"/api/audit?customer={seeded.customer_id}&limit=2"))
    assert [e["action"] for e in log["entries"]] == ["read", "erase"]
    assert log["entries"][1]["who"] == "admin:bootstrap"
    assert log["entries"][1]["detail"]["notes"] == 2

    # Again: 200, nothing more to do.
    again = await _ok(await client.post(f"/api/customers/{seeded.customer_id}/erase"))
    assert again["already_erased"] is True
    assert again["customer_number"] == erased["customer_number"]
    assert [again[k] for k in ("phones", "notes", "text_answers", "conflicts")] == [0, 0, 0, 0]
    assert (await client.post("/api/customers/999999/erase")).status == 404


async def test_erase_is_refused_while_the_customer_is_on_a_live_call(
    client: Client, pool: asyncpg.Pool[Any]
) -> None:
    made = await _ok(
        await client.post(
            "/api/customers", json={"customer_number": NUMBER, "name": NAME, "phones": [PHONE]}
        ),
        201,
    )
    call = await enqueue(client, "pbx-live", ani=PHONE)
    refused = await client.post(f"/api/customers/{made['id']}/erase")
    body = await _ok(refused, 409)
    assert "live call" in body["detail"]
    async with pool.acquire() as conn:
        assert await where_found(conn, "Quarrington") == ["customers.name"]
        erasures = "SELECT count(*) FROM customer_audit WHERE action = 'erase'"
        assert await conn.fetchval(erasures) == 0
    await _ok(
        await client.post(f"/api/calls/{call['call']['id']}/end", json={"outcome": "abandoned"})
    )
    await _ok(await client.post(f"/api/customers/{made['id']}/erase"))
    async with pool.acquire() as conn:
        assert await where_found(conn, "Quarrington") == []
        assert await where_found(conn, PHONE) == []


async def test_retention_clears_old_notes_and_text_answers_and_keeps_new_ones(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**FAST, questions_file=None)
    seeded = await seed(client, pool)
    old_call, new_call = seeded.call_ids
    async with pool.acquire() as conn:
        # The first call (notes and the text answer) happened 400 days ago.
        await conn.execute(
            "UPDATE interactions SET started_at = started_at - interval '400 days'"
            " WHERE (details->>'call_id')::bigint = $1",
            old_call,
        )
        await conn.execute(
            "UPDATE answers SET answered_at = answered_at - interval '400 days' WHERE call_id = $1",
            old_call,
        )
        done = await privacy.apply_retention(conn, 365)
        assert (done.notes, done.text_answers, done.customers) == (1, 1, 1)
        notes = await conn.fetch(
            "SELECT (details->>'call_id')::bigint AS call_id, notes FROM interactions"
            " WHERE customer_id = $1 ORDER BY 1",
            seeded.customer_id,
        )
        assert [tuple(r) for r in notes] == [
            (old_call, None),
            (new_call, "second call, nothing new"),
        ]
        answer = await conn.fetchrow(
            "SELECT value, skipped FROM answers WHERE call_id = $1", old_call
        )
        assert tuple(answer) == ("", False)
        assert await where_found(conn, "Quixote") == []
        assert await where_found(conn, "Philippa") == []
        # Run again: nothing left to clear.
        again = await privacy.apply_retention(conn, 365)
        assert (again.notes, again.text_answers) == (0, 0)
    log = await _ok(await client.get(f"/api/audit?customer={seeded.customer_id}&limit=5"))
    retention = [e for e in log["entries"] if e["action"] == "retention"]
    assert [(e["who"], e["channel"], e["detail"]) for e in retention] == [
        ("system:retention", "job", {"days": 365})
    ]


async def test_the_operator_command_runs_retention(
    app_factory: AppFactory, pool: asyncpg.Pool[Any], db_url: str
) -> None:
    client = await app_factory(**FAST, questions_file=None)
    seeded = await seed(client, pool)
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE interactions SET started_at = started_at - interval '40 days'"
            " WHERE customer_id = $1",
            seeded.customer_id,
        )
    env = os.environ | {"CALLCENTER_DATABASE_URL": db_url, "CALLCENTER_RETENTION_DAYS": "30"}
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "callcenter", "retention", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "retention (30 days): 2 notes" in " ".join(done.stdout.split())
    async with pool.acquire() as conn:
        assert await where_found(conn, "morning calls") == []
        assert (
            await conn.fetchval("SELECT channel FROM customer_audit WHERE action = 'retention'")
            == "cli"
        )


async def test_the_service_schedules_retention_daily(app_factory: AppFactory) -> None:
    client = await app_factory(retention_days=30, retention_hour=4)
    scheduler = client.app[app_keys.RETENTION_SCHEDULER]
    job = scheduler.get_job("retention")
    assert job.next_run_time.hour == 4 and job.next_run_time.minute == 0
    assert str(job.trigger).startswith("cron[")


async def test_erase_locks_the_customers_calls_before_the_customer(
    client: Client, pool: asyncpg.Pool[Any], db_url: str
) -> None:
    """A wrap-up locks its call and then the customer; an erasure that locked the
    customer first and then the call (to clear its calling number) deadlocked with the
    wrap-up of that customer's last call. The erasure now waits for the call first,
    holding nothing of the customer."""
    made = await _ok(
        await client.post(
            "/api/customers", json={"customer_number": NUMBER, "name": NAME, "phones": [PHONE]}
        ),
        201,
    )
    call = (await enqueue(client, "pbx-wrapping", ani=PHONE))["call"]["id"]
    await _ok(await client.post(f"/api/calls/{call}/end", json={"outcome": "abandoned"}))
    wrapping, probe = [await asyncpg.connect(db_url) for _ in range(2)]
    try:
        holding = wrapping.transaction()
        await holding.start()
        await wrapping.execute("SELECT 1 FROM calls WHERE id = $1 FOR NO KEY UPDATE", call)
        erasing = asyncio.create_task(client.post(f"/api/customers/{made['id']}/erase"))
        await waits_behind(probe, wrapping)
        async with probe.transaction():
            await probe.execute(
                "SELECT 1 FROM customers WHERE id = $1 FOR UPDATE NOWAIT", made["id"]
            )
        await holding.rollback()
        await _ok(await asyncio.wait_for(erasing, 30))
    finally:
        for conn in (wrapping, probe):
            await conn.close()
    async with pool.acquire() as conn:
        assert await where_found(conn, PHONE) == []
