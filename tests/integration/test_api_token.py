"""With CALLCENTER_API_TOKEN set, /api needs it; agents' tokens never open it."""

from __future__ import annotations

from pydantic import SecretStr

from tests.conftest import AppFactory
from tests.integration.queue_helpers import Panel

TOKEN = "supervisor-secret"
SUPERVISOR = {"Authorization": f"Bearer {TOKEN}"}


async def test_the_api_needs_the_api_token(app_factory: AppFactory) -> None:
    client = await app_factory(api_token=SecretStr(TOKEN))
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        resp = await client.get("/api/queues", headers=headers)
        assert resp.status == 401, headers
        body = await resp.json()
        assert body["status"] == 401 and "API token" in body["detail"]
    created = await client.post(
        "/api/agents", json={"name": "ada", "queues": ["general"]}, headers=SUPERVISOR
    )
    assert created.status == 201, await created.text()
    agent_token = (await created.json())["token"]

    # The agent's own token opens its socket and page check, not the API.
    refused = await client.get("/api/queues", headers={"Authorization": f"Bearer {agent_token}"})
    assert refused.status == 401
    panel = await Panel.open(client, agent_token)
    assert (await panel.next())["type"] == "state"
    await panel.close()
    # Probes and the description stay open for load balancers and integrators.
    for path in ("/healthz", "/readyz", "/openapi.json"):
        assert (await client.get(path)).status == 200, path
    assert (await client.get("/api/queues", headers=SUPERVISOR)).status == 200


async def test_without_a_token_the_api_is_open(app_factory: AppFactory) -> None:
    client = await app_factory()
    assert (await client.get("/api/queues")).status == 200
