"""A customer with something of everything held about them, and principals of each role.

Seeded through the API and the agent's socket as the service would see it in
use; only the identity conflicts are written directly (how a conflict comes
about is identity's business, not what these tests are about).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from tests.conftest import ADMIN
from tests.integration.queue_helpers import Panel, enqueue, make_agent, make_queue

Client = TestClient[Any, Any]

PHONE = "+12125550177"
OTHER_PHONE = "+12125550188"
NAME = "Zebulon Quarrington"
EMAIL = "zeb.quarrington@example.org"
NUMBER = "C-ZQ-77"
NOTES = "prefers morning calls; Zebulon mentioned his sister Philippa"
TEXT_ANSWER = "a sailing boat named Quixote"
PIN_REASON = "Zebulon is the chairman's nephew"
GOAL = {
    "key": "saving_for",
    "text": "What are you saving for?",
    "kind": "text",
    "priority": 10,
}

#: Every piece of the customer's identity or free text that an erasure must remove.
NEEDLES = (
    "Zebulon",
    "Quarrington",
    EMAIL,
    PHONE,
    PHONE.removeprefix("+1"),
    NUMBER,
    "morning calls",
    "Philippa",
    "Quixote",
    "chairman",
)


@dataclass(frozen=True)
class Seeded:
    customer_id: int
    other_id: int
    call_ids: list[int]


async def bearer_of(client: Client, name: str, role: str) -> dict[str, str]:
    """The Authorization header of a fresh supervisor or admin who signed in."""
    made = await client.post("/api/people", json={"name": name, "role": role}, headers=ADMIN)
    assert made.status == 201, await made.text()
    password = (await made.json())["password"]
    session = await client.post("/api/session", json={"name": name, "password": password})
    assert session.status == 201, await session.text()
    return {"Authorization": f"Bearer {(await session.json())['token']}"}


async def seed(client: Client, pool: asyncpg.Pool[Any]) -> Seeded:
    """The customer, a call taken on the agent's panel with notes and a text answer, a
    second call, a pinned tier, two identity conflicts, and another customer."""
    await make_queue(client, "general", wrap_up_seconds=0)
    resp = await client.post("/api/questions", json=GOAL)
    assert resp.status == 201, await resp.text()
    resp = await client.post(
        "/api/customers",
        json={
            "customer_number": NUMBER,
            "name": NAME,
            "email": EMAIL,
            "phones": [PHONE],
            "lifetime_value": 30000,
        },
    )
    assert resp.status == 201, await resp.text()
    customer_id: int = (await resp.json())["id"]
    resp = await client.post(
        "/api/customers",
        json={"customer_number": "C-OTHER", "name": "Other Person", "phones": [OTHER_PHONE]},
    )
    assert resp.status == 201, await resp.text()
    other_id: int = (await resp.json())["id"]
    resp = await client.put(
        f"/api/customers/{customer_id}/tier-pin", json={"tier": "gold", "reason": PIN_REASON}
    )
    assert resp.status == 200, await resp.text()

    _, token = await make_agent(client, "ada")
    panel = await Panel.open(client, token)
    await panel.send(type="available")
    await panel.state("available")
    call_ids = []
    for n, wrap in enumerate(
        (
            {"notes": NOTES, "answer": {"question_key": "saving_for", "value": TEXT_ANSWER}},
            {"notes": "second call, nothing new"},
        )
    ):
        await enqueue(client, f"pbx-zq-{n}", ani=PHONE)
        offer = await panel.until(lambda m: m["type"] == "offer")
        await panel.send(type="accept", offer_id=offer["offer_id"])
        shown = await panel.until(lambda m: m["type"] == "panel")
        assert shown["customer"]["id"] == customer_id
        await panel.send(type="wrap_up", call_id=offer["call_id"], ref=f"w{n}", **wrap)
        ack = await panel.until(lambda m: m["type"] in ("ack", "error"))
        assert ack["type"] == "ack", ack
        call_ids.append(offer["call_id"])
    await panel.close()

    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO identity_conflicts (phone_e164, phone_customer_ids, typed_customer_id,"
            " customer_number) VALUES ($1, $2, $3, $4), ($5, $6, $7, $8)",
            PHONE,
            [customer_id],
            other_id,
            "C-OTHER",
            OTHER_PHONE,
            [other_id],
            customer_id,
            NUMBER,
        )
    return Seeded(customer_id, other_id, call_ids)


async def text_columns(conn: asyncpg.Connection[Any]) -> list[tuple[str, str]]:
    """Every column of every table that can hold text (text, varchar, json, arrays of them)."""
    rows = await conn.fetch(
        """
        SELECT c.table_name, c.column_name
          FROM information_schema.columns c
          JOIN information_schema.tables t
            ON t.table_schema = c.table_schema AND t.table_name = c.table_name
         WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
           AND (c.data_type IN ('text', 'character varying', 'jsonb', 'json', 'bytea')
                OR c.udt_name IN ('_text', '_varchar'))
         ORDER BY 1, 2
        """
    )
    return [(r["table_name"], r["column_name"]) for r in rows]


async def where_found(conn: asyncpg.Connection[Any], needle: str) -> list[str]:
    """``table.column`` of every text column in the database that contains ``needle``."""
    found = []
    for table, column in await text_columns(conn):
        hits = await conn.fetchval(
            f'SELECT count(*) FROM "{table}" WHERE "{column}"::text ILIKE $1',
            f"%{needle}%",
        )
        if hits:
            found.append(f"{table}.{column}")
    return found
