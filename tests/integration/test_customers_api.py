"""The customers REST API end to end: HTTP in, PostgreSQL underneath, problem bodies out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias
from urllib.parse import quote

import asyncpg
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from tests.conftest import AppFactory

Client: TypeAlias = "TestClient[Any, Any]"
Pool: TypeAlias = "asyncpg.Pool[Any]"
Json: TypeAlias = dict[str, Any]
E164 = "+12125550100"


async def _create(client: Client, **fields: Any) -> Json:
    resp = await client.post("/api/customers", json=fields)
    assert resp.status == 201, await resp.text()
    body: Json = await resp.json()
    return body


async def _ok(client: Client, method: str, path: str, **kwargs: Any) -> Json:
    resp = await client.request(method, path, **kwargs)
    assert resp.status == 200, await resp.text()
    body: Json = await resp.json()
    return body


async def _problem(resp: ClientResponse, status: int, field: str | None = None) -> Json:
    """Assert an RFC 9457 body with ``status``; ``field`` is checked when given."""
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/problem+json"
    body: Json = await resp.json()
    assert body["status"] == status
    assert body["type"].startswith("https://") and body["title"] and body["detail"]
    if field is not None:
        assert body["field"] == field
    return body


async def _count(pool: Pool, table: str) -> int:
    async with pool.acquire() as conn:
        n: int = await conn.fetchval(f"SELECT count(*) FROM {table}")
        return n


async def test_create_then_find_by_id_number_and_every_phone_spelling(client: Client) -> None:
    made = await _create(
        client,
        customer_number="C1001",
        name="Ada Lovelace",
        email="ada@example.com",
        phones=["(212) 555-0100", "+1 212 555 0100", "+44 20 7946 0018"],
        lifetime_value="30000.00",
        cost_to_serve="200.00",
    )
    cid = made["id"]
    assert made["tier"] == made["computed_tier"] == "platinum"
    assert made["net_value"] == "29800.00"
    assert [p["number"] for p in made["phones"]] == [E164, "+442079460018"]
    assert {p["source"] for p in made["phones"]} == {"crm"}

    assert await _ok(client, "GET", f"/api/customers/{cid}") == made
    by_number = await _ok(client, "GET", "/api/customers", params={"customer_number": "C1001"})
    assert [c["id"] for c in by_number["customers"]] == [cid]
    for spelling in ["(212) 555-0100", "+1 212-555-0100", "001 212 555 0100", "12125550100"]:
        found = await _ok(client, "GET", "/api/customers", params={"phone": spelling})
        assert [c["id"] for c in found["customers"]] == [cid], spelling
    nobody = await _ok(client, "GET", "/api/customers", params={"customer_number": "C9"})
    assert nobody["customers"] == []


async def test_list_pages_return_every_customer_once(client: Client) -> None:
    made = [(await _create(client, customer_number=f"P{i}"))["id"] for i in range(7)]
    seen: list[int] = []
    after = 0
    pages = 0
    while True:
        page = await _ok(client, "GET", "/api/customers", params={"limit": 3, "after": after})
        seen += [c["id"] for c in page["customers"]]
        pages += 1
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert pages == 3
    assert seen == sorted(made)


async def test_patch_recomputes_tier_and_replaces_phones(client: Client, pool: Pool) -> None:
    made = await _create(
        client, customer_number="C1", lifetime_value="1500", phones=["212 555 0100"]
    )
    cid = made["id"]
    assert made["tier"] == "silver"

    up = await _ok(
        client, "PATCH", f"/api/customers/{cid}", json={"lifetime_value": "6000.50", "name": "A"}
    )
    assert up["tier"] == up["computed_tier"] == "gold"
    assert up["name"] == "A" and up["customer_number"] == "C1"
    down = await _ok(client, "PATCH", f"/api/customers/{cid}", json={"cost_to_serve": "5900"})
    assert down["net_value"] == "100.50" and down["tier"] == "standard"

    replaced = await _ok(
        client,
        "PATCH",
        f"/api/customers/{cid}",
        json={"phones": ["646-555-0199", "+44 20 7946 0018"]},
    )
    assert sorted(p["number"] for p in replaced["phones"]) == ["+16465550199", "+442079460018"]
    async with pool.acquire() as conn:
        stored = await conn.fetch(
            "SELECT phone_e164 FROM customer_phones WHERE customer_id = $1 ORDER BY 1", cid
        )
        tier = await conn.fetchval("SELECT computed_tier FROM customers WHERE id = $1", cid)
    assert [r["phone_e164"] for r in stored] == ["+16465550199", "+442079460018"]
    assert tier == "standard"


async def test_pin_wins_until_unpinned(client: Client) -> None:
    cid = (await _create(client, customer_number="C1", lifetime_value="100"))["id"]
    pin = {"tier": "platinum", "reason": "complaint under review", "pinned_by": "sup-ann"}
    pinned = await _ok(client, "PUT", f"/api/customers/{cid}/tier-pin", json=pin)
    assert pinned["tier"] == "platinum" and pinned["computed_tier"] == "standard"
    assert pinned["pin"]["reason"] == "complaint under review"
    # Who pinned is the signed-in caller (here the bootstrap admin), never the name typed.
    assert pinned["pin"]["pinned_by"] == "admin:bootstrap"
    assert pinned["pin"]["pinned_at"]

    # A figure change moves the computed tier, never the pin.
    changed = await _ok(client, "PATCH", f"/api/customers/{cid}", json={"lifetime_value": "2000"})
    assert changed["tier"] == "platinum" and changed["computed_tier"] == "silver"

    unpinned = await _ok(client, "DELETE", f"/api/customers/{cid}/tier-pin")
    assert unpinned["tier"] == unpinned["computed_tier"] == "silver"
    assert unpinned["pin"] is None
    assert (await _ok(client, "GET", f"/api/customers/{cid}"))["pin"] is None


async def test_add_and_remove_a_phone(client: Client) -> None:
    cid = (await _create(client, customer_number="C1", phones=[E164]))["id"]
    added = await _ok(
        client, "POST", f"/api/customers/{cid}/phones", json={"phone": "0044 20 7946 0018"}
    )
    assert sorted(p["number"] for p in added["phones"]) == [E164, "+442079460018"]
    found = await _ok(client, "GET", "/api/customers", params={"phone": "+44 20 7946 0018"})
    assert [c["id"] for c in found["customers"]] == [cid]

    removed = await _ok(client, "DELETE", f"/api/customers/{cid}/phones/{quote('(212) 555-0100')}")
    assert [p["number"] for p in removed["phones"]] == ["+442079460018"]
    gone = await _ok(client, "GET", "/api/customers", params={"phone": E164})
    assert gone["customers"] == []
    again = await client.delete(f"/api/customers/{cid}/phones/{quote(E164)}")
    await _problem(again, 404)


async def test_history_pages_newest_first_without_duplicates(client: Client, pool: Pool) -> None:
    cid = (await _create(client, customer_number="C1"))["id"]
    other = (await _create(client, customer_number="C2"))["id"]
    empty = await _ok(client, "GET", f"/api/customers/{cid}/history")
    assert empty == {"customer_id": cid, "interactions": [], "next_before": None}

    base = datetime(2026, 1, 1, tzinfo=UTC)
    # Out of order on purpose, with two contacts at the same instant.
    offsets = [5, 1, 3, 3, 0, 4, 2]
    async with pool.acquire() as conn:
        ids = [
            await conn.fetchval(
                "INSERT INTO interactions (customer_id, started_at, notes)"
                " VALUES ($1, $2, $3) RETURNING id",
                cid,
                base + timedelta(minutes=m),
                f"m{m}",
            )
            for m in offsets
        ]
        await conn.execute("INSERT INTO interactions (customer_id) VALUES ($1)", other)
    expected = [i for _, i in sorted(zip(offsets, ids, strict=True), reverse=True)]

    seen: list[int] = []
    before: int | None = None
    pages = 0
    while True:
        params: dict[str, int] = {"limit": 3} | ({"before": before} if before else {})
        page = await _ok(client, "GET", f"/api/customers/{cid}/history", params=params)
        seen += [i["id"] for i in page["interactions"]]
        pages += 1
        before = page["next_before"]
        if before is None:
            break
    assert pages == 3
    assert seen == expected


async def test_identify_end_to_end(client: Client, pool: Pool) -> None:
    cid = (await _create(client, customer_number="C1", lifetime_value="30000", phones=[E164]))["id"]
    known = await _ok(client, "POST", "/api/identify", json={"ani": "+1 212-555-0100"})
    assert known["outcome"] == "known" and known["matched_by"] == "phone"
    assert known["customer"]["id"] == cid and known["customer"]["tier"] == "platinum"

    unknown = await _ok(client, "POST", "/api/identify", json={"ani": "(415) 555-0132"})
    assert unknown["outcome"] == "unknown" and unknown["phone"] == "+14155550132"
    assert unknown["customer"]["provisional"] is True
    async with pool.acquire() as conn:
        provisional = await conn.fetchval(
            "SELECT customer_id FROM customer_phones WHERE phone_e164 = '+14155550132'"
        )
    assert provisional == unknown["customer"]["id"]
    again = await _ok(client, "POST", "/api/identify", json={"ani": "4155550132"})
    assert again["outcome"] == "known" and again["customer"]["id"] == provisional


async def test_merging_a_real_customer_is_a_conflict(client: Client) -> None:
    a = (await _create(client, customer_number="A"))["id"]
    b = (await _create(client, customer_number="B"))["id"]
    resp = await client.post(f"/api/customers/{a}/merge", json={"into_customer_id": b})
    await _problem(resp, 409)
    assert (await _ok(client, "GET", f"/api/customers/{a}"))["merged_into"] is None


async def test_merge_a_provisional_customer_through_the_api(client: Client, pool: Pool) -> None:
    real = (await _create(client, customer_number="C1"))["id"]
    prov = (await _ok(client, "POST", "/api/identify", json={"ani": "(415) 555-0132"}))["customer"][
        "id"
    ]
    async with pool.acquire() as conn:
        interaction = await conn.fetchval(
            "INSERT INTO interactions (customer_id) VALUES ($1) RETURNING id", prov
        )
    merged = await _ok(
        client, "POST", f"/api/customers/{prov}/merge", json={"into_customer_id": real}
    )
    assert merged["id"] == real
    assert [p["number"] for p in merged["phones"]] == ["+14155550132"]
    hist = await _ok(client, "GET", f"/api/customers/{real}/history")
    assert [i["id"] for i in hist["interactions"]] == [interaction]
    assert (await _ok(client, "GET", f"/api/customers/{prov}"))["merged_into"] == real
    twice = await client.post(f"/api/customers/{prov}/merge", json={"into_customer_id": real})
    await _problem(twice, 409)


async def test_bad_create_is_422_and_writes_nothing(client: Client, pool: Pool) -> None:
    await _create(client, customer_number="C0", phones=[E164])
    cases: list[tuple[Json, str]] = [
        ({"customer_number": "X", "phones": ["+44 20 7946 0018", "12"]}, "phones[1]"),
        ({"customer_number": "X", "lifetime_value": "-1"}, "lifetime_value"),
        ({"customer_number": "X", "cost_to_serve": -5}, "cost_to_serve"),
        ({"customer_number": "X", "email": "not-an-email"}, "email"),
        ({"customer_number": "X Y"}, "customer_number"),
        ({"customer_number": "X", "colour": "red"}, "colour"),
    ]
    before = (await _count(pool, "customers"), await _count(pool, "customer_phones"))
    for body, field in cases:
        await _problem(await client.post("/api/customers", json=body), 422, field)
    assert (await _count(pool, "customers"), await _count(pool, "customer_phones")) == before


async def test_duplicate_customer_number_is_409_and_writes_nothing(
    client: Client, pool: Pool
) -> None:
    first = await _create(client, customer_number="C1", phones=[E164])
    before = (await _count(pool, "customers"), await _count(pool, "customer_phones"))
    resp = await client.post(
        "/api/customers", json={"customer_number": " C1 ", "phones": ["+44 20 7946 0018"]}
    )
    await _problem(resp, 409, "customer_number")
    assert (await _count(pool, "customers"), await _count(pool, "customer_phones")) == before

    other = await _create(client, customer_number="C2")
    clash = await client.patch(f"/api/customers/{other['id']}", json={"customer_number": "C1"})
    await _problem(clash, 409, "customer_number")
    assert (await _ok(client, "GET", f"/api/customers/{first['id']}"))["customer_number"] == "C1"


async def test_unknown_tier_on_pin_is_422(client: Client, pool: Pool) -> None:
    cid = (await _create(client, customer_number="C1"))["id"]
    resp = await client.put(
        f"/api/customers/{cid}/tier-pin",
        json={"tier": "diamond", "reason": "r", "pinned_by": "s"},
    )
    problem = await _problem(resp, 422, "tier")
    assert "platinum" in problem["detail"]
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT pinned_tier FROM customers WHERE id = $1", cid) is None


async def test_bad_phone_in_patch_and_lookup_is_422(client: Client, pool: Pool) -> None:
    cid = (await _create(client, customer_number="C1", phones=[E164]))["id"]
    resp = await client.patch(f"/api/customers/{cid}", json={"phones": ["555"]})
    await _problem(resp, 422, "phones[0]")
    async with pool.acquire() as conn:
        phones = await conn.fetch("SELECT phone_e164 FROM customer_phones")
    assert [r["phone_e164"] for r in phones] == [E164]
    await _problem(await client.get("/api/customers", params={"phone": "abc"}), 422, "phone")
    await _problem(
        await client.post(f"/api/customers/{cid}/phones", json={"phone": "12"}), 422, "phone"
    )


async def test_patch_with_null_for_a_required_field_is_422(client: Client) -> None:
    cid = (await _create(client, customer_number="C1", name="Ada", lifetime_value="10"))["id"]
    for field in ["name", "lifetime_value", "annual_margin", "cost_to_serve"]:
        resp = await client.patch(f"/api/customers/{cid}", json={field: None, "email": None})
        await _problem(resp, 422, field)
    after = await _ok(client, "GET", f"/api/customers/{cid}")
    assert after["name"] == "Ada" and after["lifetime_value"] == "10.00"
    # Nullable fields may be cleared; absent fields stay.
    cleared = await _ok(client, "PATCH", f"/api/customers/{cid}", json={"email": None})
    assert cleared["email"] is None and cleared["name"] == "Ada"


async def test_malformed_json_is_400(client: Client, pool: Pool) -> None:
    before = await _count(pool, "customers")
    resp = await client.post(
        "/api/customers",
        data=b'{"customer_number": "C1",',
        headers={"content-type": "application/json"},
    )
    await _problem(resp, 400)
    bad_bytes = await client.post(
        "/api/identify", data=b"\xff\xfe", headers={"content-type": "application/json"}
    )
    await _problem(bad_bytes, 400)
    assert await _count(pool, "customers") == before


async def test_unknown_or_malformed_ids_are_404_never_500(client: Client) -> None:
    cases = [
        ("GET", "/api/customers/999999"),
        ("PATCH", "/api/customers/999999"),
        ("PUT", "/api/customers/999999/tier-pin"),
        ("DELETE", "/api/customers/999999/tier-pin"),
        ("POST", "/api/customers/999999/phones"),
        ("GET", "/api/customers/999999/history"),
        ("GET", "/api/customers/abc"),
        ("GET", "/api/customers/-1"),
        ("GET", "/api/customers/0"),
        ("GET", "/api/customers/1.5/history"),
        ("GET", "/api/customers/99999999999999999999999"),
        ("GET", "/api/no-such-route"),
    ]
    bodies: dict[str, Json] = {
        "PATCH": {"name": "x"},
        "PUT": {"tier": "gold", "reason": "r", "pinned_by": "s"},
        "POST": {"phone": E164},
    }
    for method, path in cases:
        resp = await client.request(method, path, json=bodies.get(method))
        problem = await _problem(resp, 404)
        assert problem["title"], (method, path)


async def test_body_over_the_limit_is_413(app_factory: AppFactory, pool: Pool) -> None:
    small = await app_factory(max_body_bytes=2048)
    body = {"customer_number": "C1", "name": "x" * 4096}
    problem = await _problem(await small.post("/api/customers", json=body), 413)
    assert "2048" in problem["detail"]
    assert await _count(pool, "customers") == 0


async def test_wrong_method_is_405(client: Client) -> None:
    await _problem(await client.put("/api/customers", json={}), 405)
    await _problem(await client.delete("/api/identify"), 405)


async def test_openapi_lists_every_registered_api_route(client: Client) -> None:
    doc = await _ok(client, "GET", "/openapi.json")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    registered = {
        (route.method, route.resource.canonical)
        for route in client.app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/api/")
        and route.method != "HEAD"
    }
    assert ("POST", "/api/identify") in registered
    assert ("DELETE", "/api/customers/{customer_id}/phones/{phone}") in registered
    assert registered == {(m, p) for m, p in documented if p.startswith("/api/")}

    docs = await client.get("/docs")
    assert docs.status == 200 and docs.content_type == "text/html"
    assert "/api/customers/{customer_id}/history" in await docs.text()


async def test_metrics_count_requests_by_route(client: Client) -> None:
    await client.get("/api/customers/12345")
    resp = await client.get("/metrics")
    assert resp.status == 200 and resp.content_type == "text/plain"
    text = await resp.text()
    assert "# TYPE callcenter_http_requests_total counter" in text
    line = next(
        ln
        for ln in text.splitlines()
        if ln.startswith("callcenter_http_requests_total{")
        and 'route="/api/customers/{customer_id}"' in ln
    )
    assert 'status="404"' in line and 'method="GET"' in line
    assert float(line.rsplit(" ", 1)[1]) == 1.0


async def test_a_unique_constraint_other_than_the_number_is_not_called_a_duplicate_number(
    client: Client, pool: Pool
) -> None:
    # An operator's own rule (one e-mail per customer) must not be reported as the
    # customer number being taken: the 409 names the constraint that refused it.
    async with pool.acquire() as conn:
        await conn.execute("CREATE UNIQUE INDEX customers_one_email ON customers (email)")
    await _create(client, customer_number="C1", email="same@example.com")
    resp = await client.post(
        "/api/customers", json={"customer_number": "C2", "email": "same@example.com"}
    )
    body = await _problem(resp, 409)
    assert "customers_one_email" in body["detail"]
    assert body.get("field") != "customer_number"
    made = await _create(client, customer_number="C3", email="other@example.com")
    resp = await client.patch(f"/api/customers/{made['id']}", json={"email": "same@example.com"})
    body = await _problem(resp, 409)
    assert "customers_one_email" in body["detail"]


async def test_a_phone_of_another_customer_is_refused_unless_shared_on_purpose(
    client: Client, pool: Pool
) -> None:
    ada = await _create(client, customer_number="C1", phones=[E164])
    before = (await _count(pool, "customers"), await _count(pool, "customer_phones"))

    # Create: 409 naming the other customer and the field, and nothing written.
    taken = await client.post(
        "/api/customers",
        json={"customer_number": "C2", "phones": ["+44 20 7946 0018", "(212) 555-0100"]},
    )
    body = await _problem(taken, 409, "phones[1]")
    assert body["other_customer"] == {"id": ada["id"], "customer_number": "C1"}
    assert f"customer {ada['id']} (C1)" in body["detail"]
    assert (await _count(pool, "customers"), await _count(pool, "customer_phones")) == before

    # shared_phones must name one of the phones: a typo must not pass unnoticed.
    typo = await client.post(
        "/api/customers",
        json={"customer_number": "C2", "phones": [E164], "shared_phones": ["+1 212 555 0199"]},
    )
    await _problem(typo, 422, "shared_phones[0]")

    shared = await _create(
        client, customer_number="C2", phones=["212 555 0100"], shared_phones=["+1 212-555-0100"]
    )
    assert [p["number"] for p in shared["phones"]] == [E164]
    both = await _ok(client, "POST", "/api/identify", json={"ani": E164})
    assert both["outcome"] == "multiple"

    # Change: PATCH and the phone-add endpoint answer the same.
    bob = await _create(client, customer_number="C3", phones=["+1 646 555 0199"])
    patched = await client.patch(
        f"/api/customers/{bob['id']}", json={"phones": ["+1 646 555 0199", E164]}
    )
    body = await _problem(patched, 409, "phones[1]")
    assert body["other_customer"] == {"id": ada["id"], "customer_number": "C1"}
    unchanged = await _ok(client, "GET", f"/api/customers/{bob['id']}")
    assert [p["number"] for p in unchanged["phones"]] == ["+16465550199"]

    added = await client.post(f"/api/customers/{bob['id']}/phones", json={"phone": E164})
    body = await _problem(added, 409, "phone")
    assert body["other_customer"] == {"id": ada["id"], "customer_number": "C1"}
    on_purpose = await _ok(
        client, "POST", f"/api/customers/{bob['id']}/phones", json={"phone": E164, "shared": True}
    )
    assert sorted(p["number"] for p in on_purpose["phones"]) == [E164, "+16465550199"]

    # Sending a customer's own numbers again changes nobody's sharing: no 409.
    again = await _ok(
        client, "PATCH", f"/api/customers/{ada['id']}", json={"phones": ["(212) 555-0100"]}
    )
    assert [p["number"] for p in again["phones"]] == [E164]


async def test_a_provisional_record_does_not_hold_a_number_against_the_crm(client: Client) -> None:
    unknown = await _ok(client, "POST", "/api/identify", json={"ani": "(415) 555-0132"})
    assert unknown["customer"]["provisional"] is True
    made = await _create(client, customer_number="C1", phones=["+1 415 555 0132"])
    known = await _ok(client, "POST", "/api/identify", json={"ani": "+14155550132"})
    assert known["outcome"] == "known" and known["customer"]["id"] == made["id"]
