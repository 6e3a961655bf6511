from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient


async def test_ready_and_openapi(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/readyz")
    assert resp.status == 200
    assert (await resp.json())["status"] == "ready"
    doc = await (await client.get("/openapi.json")).json()
    assert "/api/customers/{customer_id}" in doc["paths"]
