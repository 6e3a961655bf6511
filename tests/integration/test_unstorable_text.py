"""Text the database cannot store is a 422 naming the field, never a 500, nothing stored."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from callcenter.http.text import unstorable_field

Client = TestClient[Any, Any]


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/api/customers", {"customer_number": "C1", "name": "a\u0000b"}, "name"),
        ("POST", "/api/customers", {"customer_number": "C\u00001"}, "customer_number"),
        ("POST", "/api/customers", {"customer_number": "C1", "phones": ["\u0000"]}, "phones[0]"),
        ("POST", "/api/customers", {"customer_number": "C1", "name": "\ud800"}, "name"),
        ("POST", "/api/identify", {"ani": "+1212555\u00000100"}, "ani"),
        (
            "POST",
            "/api/questions",
            {"key": "q1", "text": "Why\u0000?", "kind": "text"},
            "text",
        ),
        ("POST", "/api/calls", {"call_id": "c\u00001", "queue": "general"}, "call_id"),
        ("POST", "/api/agents", {"name": "ada", "queues": ["general\u0000"]}, "queues[0]"),
    ],
)
async def test_nul_and_lone_surrogates_are_refused_at_the_edge(
    client: Client, pool: Any, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    async with pool.acquire() as conn:
        before = await conn.fetchval(
            "SELECT (SELECT count(*) FROM customers) + (SELECT count(*) FROM calls)"
            " + (SELECT count(*) FROM agents)"
        )
    resp = await client.request(method, path, json=body)
    assert resp.status == 422, await resp.text()
    problem = await resp.json()
    assert problem["field"] == field and "NUL" in problem["detail"]
    async with pool.acquire() as conn:
        after = await conn.fetchval(
            "SELECT (SELECT count(*) FROM customers) + (SELECT count(*) FROM calls)"
            " + (SELECT count(*) FROM agents)"
        )
    assert after == before


async def test_in_a_query_or_a_path_too(client: Client) -> None:
    resp = await client.get("/api/customers?customer_number=C%001")
    assert resp.status == 422 and (await resp.json())["field"] == "customer_number"
    resp = await client.get("/api/questions/a%00b")
    assert resp.status == 422 and (await resp.json())["field"] == "key"


def test_the_path_names_the_field() -> None:
    assert unstorable_field({"a": [{"b": "x\x00"}]}) == "a[0].b"
    assert unstorable_field({"ok": "fine", "n": 3, "l": ["x"]}) is None
    assert unstorable_field({"k\x00": 1}) == "k\x00"


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/customers?after=100000000000000000000", "after"),
        ("/api/identity/conflicts?customer_id=100000000000000000000", "customer_id"),
        ("/api/audit?customer=100000000000000000000", "customer"),
        ("/api/customers/1/history?before=100000000000000000000", "before"),
    ],
)
async def test_an_id_past_bigint_is_a_422_naming_it(client: Client, path: str, field: str) -> None:
    resp = await client.get(path)
    assert resp.status == 422, await resp.text()
    assert (await resp.json())["field"] == field
