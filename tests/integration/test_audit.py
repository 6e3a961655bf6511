"""The audit log: every read and change of a customer's record, by whom, from where; append-only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import asyncpg
import pytest

from tests.conftest import ADMIN, AppFactory
from tests.integration.privacy_helpers import GOAL, PHONE, Client, bearer_of, seed
from tests.integration.queue_helpers import FAST

Json = dict[str, Any]


async def _ok(resp: Any, status: int = 200) -> Json:
    assert resp.status == status, await resp.text()
    body: Json = await resp.json()
    return body


async def _log(client: Client, customer_id: int) -> list[Json]:
    """Every entry about the customer, oldest first."""
    page = await _ok(await client.get(f"/api/audit?customer={customer_id}&limit=500"))
    assert page["next_before"] is None
    return list(reversed(page["entries"]))


async def test_every_read_and_change_through_the_api_names_its_principal(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(questions_file=None)  # the one question below is the pending one
    sup = await bearer_of(client, "sam", "supervisor")
    assert (await client.post("/api/questions", json=GOAL)).status == 201
    made = await _ok(
        await client.post(
            "/api/customers",
            json={"customer_number": "A-1", "name": "Ann Example", "phones": [PHONE]},
        ),
        201,
    )
    cid = made["id"]
    base = f"/api/customers/{cid}"
    admin_steps: list[tuple[str, str, Json | None, int]] = [
        ("PATCH", base, {"name": "Ann Other", "lifetime_value": 9000}, 200),
        ("POST", f"{base}/phones", {"phone": "+12125550199"}, 200),
        ("DELETE", f"{base}/phones/%2B12125550199", None, 200),
        ("POST", f"{base}/answers", {"question_key": "saving_for", "value": "a house"}, 201),
        ("POST", "/api/identify", {"ani": PHONE}, 200),
    ]
    for method, path, body, status in admin_steps:
        await _ok(await client.request(method, path, json=body), status)
    supervisor_steps: list[tuple[str, str, Json | None]] = [
        ("GET", base, None),
        ("GET", f"{base}/history", None),
        ("GET", f"{base}/question", None),
        ("GET", f"{base}/treatments", None),
        ("GET", f"/api/customers?phone={quote(PHONE)}", None),
        ("GET", "/api/customers?customer_number=A-1", None),
        ("GET", "/api/customers", None),
        ("PUT", f"{base}/tier-pin", {"tier": "gold", "reason": "kept as promised"}),
        ("DELETE", f"{base}/tier-pin", None),
    ]
    for method, path, body in supervisor_steps:
        await _ok(await client.request(method, path, json=body, headers=sup))

    entries = await _log(client, cid)
    assert [(e["action"], e["who"]) for e in entries] == [
        ("create", "admin:bootstrap"),
        ("update", "admin:bootstrap"),
        ("add_phone", "admin:bootstrap"),
        ("remove_phone", "admin:bootstrap"),
        ("answer", "admin:bootstrap"),
        ("identify", "admin:bootstrap"),
        ("read", "supervisor:sam"),
        ("history", "supervisor:sam"),
        ("question", "supervisor:sam"),
        ("treatments", "supervisor:sam"),
        ("lookup", "supervisor:sam"),
        ("lookup", "supervisor:sam"),
        ("list", "supervisor:sam"),
        ("pin_tier", "supervisor:sam"),
        ("unpin_tier", "supervisor:sam"),
    ]
    assert {e["channel"] for e in entries} == {"api"}
    assert {e["remote"] for e in entries} == {"127.0.0.1"}
    assert entries[0]["detail"] == {"fields": ["customer_number", "name", "phones"]}
    assert entries[1]["detail"] == {"fields": ["lifetime_value", "name"]}
    assert entries[10]["detail"] == {"by": "phone"}
    assert entries[13]["detail"] == {"tier": "gold"}
    # The log holds what was done, never the customer's text or the values typed.
    async with pool.acquire() as conn:
        details = await conn.fetchval("SELECT string_agg(detail::text, ' ') FROM customer_audit")
    for text in ("Ann", "a house", "kept as promised", "555"):
        assert text not in details


async def test_a_merge_is_recorded_for_both_customers(client: Client) -> None:
    unknown = await _ok(await client.post("/api/identify", json={"ani": "+12125550123"}))
    provisional = unknown["customer"]["id"]
    real = await _ok(
        await client.post("/api/customers", json={"customer_number": "R-1", "name": "Real"}), 201
    )
    await _ok(
        await client.post(
            f"/api/customers/{provisional}/merge", json={"into_customer_id": real["id"]}
        )
    )
    for cid in (provisional, real["id"]):
        merge = [e for e in await _log(client, cid) if e["action"] == "merge"]
        assert len(merge) == 1
        assert merge[0]["detail"] == {"provisional": provisional, "into": real["id"]}


async def test_reads_of_nobody_and_refused_requests_leave_no_entry(client: Client) -> None:
    assert (await client.get("/api/customers/999999")).status == 404
    made = await _ok(await client.post("/api/customers", json={"customer_number": "B-1"}), 201)
    agent = await client.post("/api/agents", json={"name": "eve", "queues": ["general"]})
    token = (await agent.json())["token"]
    refused = await client.get(
        f"/api/customers/{made['id']}", headers={"Authorization": f"Bearer {token}"}
    )
    assert refused.status == 403
    everything = await _ok(await client.get("/api/audit"))
    assert [(e["customer_id"], e["action"]) for e in everything["entries"]] == [
        (made["id"], "create")
    ]


async def test_the_panel_and_the_wrap_up_are_recorded_as_the_agent_and_nothing_else_on_a_call(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**FAST, questions_file=None)
    seeded = await seed(client, pool)
    entries = await _log(client, seeded.customer_id)
    # Creating and pinning through the API; then, per call, the panel the agent read
    # and the wrap-up it stored. Handing in the call, offering and accepting it add none.
    assert [(e["action"], e["who"], e["channel"]) for e in entries] == [
        ("create", "admin:bootstrap", "api"),
        ("pin_tier", "admin:bootstrap", "api"),
        ("panel", "agent:ada", "panel"),
        ("wrap_up", "agent:ada", "panel"),
        ("panel", "agent:ada", "panel"),
        ("wrap_up", "agent:ada", "panel"),
    ]
    first_panel, first_wrap = entries[2], entries[3]
    assert first_panel["detail"] == {"call_id": seeded.call_ids[0]}
    assert first_panel["remote"] == "127.0.0.1"
    assert first_wrap["detail"] == {
        "call_id": seeded.call_ids[0],
        "notes": True,
        "question_key": "saving_for",
    }


async def test_filters_by_who_and_since_and_pages_newest_first(client: Client) -> None:
    sup = await bearer_of(client, "sue", "supervisor")
    made = await _ok(await client.post("/api/customers", json={"customer_number": "P-1"}), 201)
    for _ in range(3):
        await _ok(await client.get(f"/api/customers/{made['id']}", headers=sup))
    mine = await _ok(await client.get("/api/audit?who=supervisor:sue&limit=2"))
    assert [e["action"] for e in mine["entries"]] == ["read", "read"]
    assert mine["entries"][0]["id"] > mine["entries"][1]["id"]
    rest = await _ok(
        await client.get(f"/api/audit?who=supervisor:sue&limit=2&before={mine['next_before']}")
    )
    assert [e["action"] for e in rest["entries"]] == ["read"] and rest["next_before"] is None
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    later = await _ok(await client.get("/api/audit", params={"since": future}))
    assert later["entries"] == []
    assert (await client.get("/api/audit?customer=0")).status == 422


async def test_the_log_cannot_be_changed_or_emptied(
    client: Client, pool: asyncpg.Pool[Any]
) -> None:
    await _ok(await client.post("/api/customers", json={"customer_number": "L-1"}), 201)
    async with pool.acquire() as conn:
        for statement in (
            "UPDATE customer_audit SET who = 'admin:someone-else'",
            "DELETE FROM customer_audit",
            "TRUNCATE customer_audit",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await conn.execute(statement)
        assert await conn.fetchval("SELECT who FROM customer_audit") == "admin:bootstrap"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/audit"),
        ("GET", "/api/customers/{id}/export"),
        ("POST", "/api/customers/{id}/erase"),
    ],
)
async def test_only_admins_read_the_log_export_and_erase(
    client: Client, pool: asyncpg.Pool[Any], method: str, path: str
) -> None:
    made = await _ok(await client.post("/api/customers", json={"customer_number": "X-1"}), 201)
    url = path.format(id=made["id"])
    agent = await _ok(
        await client.post("/api/agents", json={"name": "al", "queues": ["general"]}), 201
    )
    crm = await _ok(
        await client.post("/api/integrations", json={"label": "crm", "role": "supervisor"}), 201
    )
    callers = {
        "anonymous": ({"Authorization": ""}, 401),
        "agent": ({"Authorization": f"Bearer {agent['token']}"}, 403),
        "supervisor": (await bearer_of(client, "sid", "supervisor"), 403),
        "supervisor integration": ({"Authorization": f"Bearer {crm['token']}"}, 403),
    }
    for who, (headers, status) in callers.items():
        resp = await client.request(method, url, headers=headers)
        assert resp.status == status, (who, await resp.text())
    async with pool.acquire() as conn:
        erased = await conn.fetchval("SELECT erased_at FROM customers WHERE id = $1", made["id"])
    assert erased is None
    admin = await bearer_of(client, "ada-admin", "admin")
    assert (await client.request(method, url, headers=admin)).status == 200
    assert (await client.request(method, url, headers=ADMIN)).status == 200
