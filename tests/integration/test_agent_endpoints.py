"""Agents' endpoints over the API, and the telephony endpoints in the OpenAPI document."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient


async def test_an_agents_endpoint_is_set_changed_and_removed(client: TestClient[Any, Any]) -> None:
    created = await client.post(
        "/api/agents", json={"name": "ada", "queues": ["general"], "endpoint": "client:ada"}
    )
    assert created.status == 201
    agent = (await created.json())["agent"]
    assert agent["endpoint"] == "client:ada"
    for endpoint in ["sip:ada@pbx.example", "+15551230000", "PJSIP/1001", None]:
        resp = await client.patch(f"/api/agents/{agent['id']}", json={"endpoint": endpoint})
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["endpoint"] == endpoint
        read = await (await client.get(f"/api/agents/{agent['id']}")).json()
        assert read["endpoint"] == endpoint


async def test_bad_endpoints_are_422_and_unknown_agents_404(client: TestClient[Any, Any]) -> None:
    created = await client.post("/api/agents", json={"name": "bob", "queues": ["general"]})
    agent_id = (await created.json())["agent"]["id"]
    for endpoint in ["", "ring bob", "client:", "sip:a b@x", "+1", "555-0100", "x" * 201]:
        resp = await client.patch(f"/api/agents/{agent_id}", json={"endpoint": endpoint})
        assert resp.status == 422, endpoint
        assert (await resp.json())["field"] == "endpoint"
    resp = await client.post(
        "/api/agents", json={"name": "eve", "queues": ["general"], "endpoint": "nowhere"}
    )
    assert resp.status == 422
    resp = await client.patch(f"/api/agents/{agent_id}", json={})
    assert resp.status == 422
    resp = await client.patch("/api/agents/999", json={"endpoint": "client:x"})
    assert resp.status == 404


async def test_the_telephony_endpoints_are_in_the_openapi_document(
    client: TestClient[Any, Any],
) -> None:
    doc = await (await client.get("/openapi.json")).json()
    generic = doc["paths"]["/telephony/generic/events"]["post"]
    assert "application/json" in generic["requestBody"]["content"]
    assert {"200", "400", "403", "413", "422"} <= set(generic["responses"])
    for path in ["voice", "wait", "status", "dial"]:
        op = doc["paths"][f"/telephony/twilio/{path}"]["post"]
        assert "application/x-www-form-urlencoded" in op["requestBody"]["content"]
        assert "text/xml" in op["responses"]["200"]["content"]
        assert "403" in op["responses"]
    assert "GenericEvent" in doc["components"]["schemas"]
    assert "TwilioForm" in doc["components"]["schemas"]
