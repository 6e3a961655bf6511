"""Who may do what: closed by default, people and roles, tokens that end, the edges.

The matrix walks every route of ``/openapi.json`` (plus the socket, the pages,
``/metrics`` and the webhooks) as anonymous, an agent, a supervisor, an
integration and an admin, and checks each cell against the route's declared
access.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import asyncpg
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from callcenter.queue import agents
from tests.conftest import ADMIN, AppFactory
from tests.integration.queue_helpers import (
    agent_state,
    end_call,
    make_agent,
    make_queue,
    take_call,
    wrap_up_clock_ends,
)

Client = TestClient[Any, Any]
Json = dict[str, Any]
NOBODY: dict[str, str] = {}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _json(resp: Any, status: int) -> Json:
    assert resp.status == status, await resp.text()
    body: Json = await resp.json()
    return body


async def _agent(client: Client, name: str = "ada") -> tuple[int, str]:
    made = await _json(
        await client.post("/api/agents", json={"name": name, "queues": ["general"]}, headers=ADMIN),
        201,
    )
    return made["agent"]["id"], made["token"]


async def _person(client: Client, name: str, role: str) -> tuple[int, str]:
    made = await _json(
        await client.post("/api/people", json={"name": name, "role": role}, headers=ADMIN), 201
    )
    password = made["password"]
    assert isinstance(password, str) and len(password) >= 12
    session = await _json(
        await client.post("/api/session", json={"name": name, "password": password}), 201
    )
    return made["person"]["id"], session["token"]


async def test_the_api_is_closed_by_default(app_factory: AppFactory, pool: Any) -> None:
    client = await app_factory(api_token=None, headers=NOBODY)
    for method, path in (
        ("GET", "/api/queues"),
        ("GET", "/api/customers"),
        ("POST", "/api/agents"),
    ):
        resp = await client.request(method, path, json={"name": "x", "queues": ["general"]})
        body = await _json(resp, 401)
        assert "token" in body["detail"]
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM agents") == 0
    for path in ("/healthz", "/readyz", "/openapi.json", "/docs", "/agent"):
        assert (await client.get(path)).status == 200, path


async def test_an_operator_may_open_it_on_purpose(app_factory: AppFactory) -> None:
    client = await app_factory(api_token=None, insecure_open_api=True, headers=NOBODY)
    assert (await client.get("/api/queues")).status == 200
    who = await _json(await client.get("/api/session"), 200)
    assert who["who"] == "admin:open-api"
    # A token that is sent is still checked.
    assert (await client.get("/api/queues", headers=bearer("wrong"))).status == 401


async def test_a_body_that_is_not_json_is_refused_before_it_is_read(
    client: Client, pool: Any
) -> None:
    # A cross-site form can post text/plain without asking; such a body never counts.
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        resp = await client.post(
            "/api/customers",
            data=b'{"customer_number": "C1"}',
            headers={"Content-Type": content_type},
        )
        body = await _json(resp, 415)
        assert body["field"] == "Content-Type"
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM customers") == 0
    ok = await client.post("/api/customers", json={"customer_number": "C1"})
    assert ok.status == 201


async def test_a_host_that_is_not_ours_is_refused(app_factory: AppFactory) -> None:
    client = await app_factory()
    # DNS rebinding: a page on evil.example resolves its name to this service.
    resp = await client.get("/api/customers", headers={"Host": "evil.example"} | ADMIN)
    body = await _json(resp, 421)
    assert body["field"] == "Host" and "evil.example" in body["detail"]
    assert (await client.get("/agent", headers={"Host": "evil.example"})).status == 421
    # Probes and scrapes come by address; named hosts and localhost are fine.
    assert (await client.get("/healthz", headers={"Host": "10.1.2.3:8080"})).status == 200
    assert (await client.get("/api/queues", headers={"Host": "localhost:8080"})).status == 200
    named = await app_factory(allowed_hosts=["cc.example.com"])
    assert (await named.get("/api/queues", headers={"Host": "cc.example.com"})).status == 200
    public = await app_factory(public_url="https://calls.example.org/base")
    assert (await public.get("/api/queues", headers={"Host": "calls.example.org"})).status == 200


async def test_wrong_tokens_are_throttled_per_address(app_factory: AppFactory) -> None:
    client = await app_factory(auth_failures_per_minute=5, headers=NOBODY)
    for _ in range(5):
        assert (await client.get("/api/queues", headers=bearer("guess"))).status == 401
    resp = await client.get("/api/queues", headers=bearer("guess"))
    body = await _json(resp, 429)
    assert int(resp.headers["Retry-After"]) >= 1 and "too many" in body["detail"]
    # A right token still works: clients behind one proxy share an address, and one
    # guesser must not lock the others out (a 256-bit token cannot be guessed anyway).
    assert (await client.get("/api/queues", headers=ADMIN)).status == 200
    # Wrong passwords count the same way.
    other = await app_factory(auth_failures_per_minute=2, headers=NOBODY)
    await _json(
        await other.post("/api/people", json={"name": "ann", "role": "admin"}, headers=ADMIN), 201
    )
    for _ in range(2):
        wrong = await other.post("/api/session", json={"name": "ann", "password": "not-it-at-all"})
        assert wrong.status == 401
    assert (await other.post("/api/session", json={"name": "ann", "password": "x"})).status == 429


async def test_a_supervisor_signs_in_acts_under_their_own_name_and_signs_out(
    client: Client, pool: Any
) -> None:
    _, token = await _person(client, "ann", "supervisor")
    me = bearer(token)
    who = await _json(await client.get("/api/session", headers=me), 200)
    assert who == {"who": "supervisor:ann", "role": "supervisor", "name": "ann", "kind": "session"}
    assert (await client.get("/api/queues", headers=me)).status == 200
    # Supervisors steer calls and pins, but do not administer people, queues or agents.
    customer = await _json(await client.post("/api/customers", json={"customer_number": "C1"}), 201)
    pinned = await _json(
        await client.put(
            f"/api/customers/{customer['id']}/tier-pin",
            json={"tier": "gold", "reason": "complaint", "pinned_by": "someone-else"},
            headers=me,
        ),
        200,
    )
    assert pinned["pin"]["pinned_by"] == "supervisor:ann"
    for method, path, body in (
        ("POST", "/api/agents", {"name": "bob", "queues": ["general"]}),
        ("PUT", "/api/queues/sales", {}),
        ("POST", "/api/people", {"name": "eve", "role": "admin"}),
        ("POST", "/api/questions", {"key": "k", "text": "t", "kind": "text"}),
    ):
        refused = await _json(await client.request(method, path, json=body, headers=me), 403)
        assert "supervisor:ann" in refused["detail"]
    assert (await client.delete("/api/session", headers=me)).status == 204
    assert (await client.get("/api/queues", headers=me)).status == 401


async def test_sessions_end_when_they_expire_or_their_person_is_removed(
    client: Client, pool: Any
) -> None:
    person_id, token = await _person(client, "ann", "admin")
    _, other = await _person(client, "bob", "supervisor")
    assert (await client.get("/api/people", headers=bearer(token))).status == 200
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE credentials SET expires_at = now() - interval '1 second' WHERE person_id = $1",
            person_id,
        )
    assert (await client.get("/api/queues", headers=bearer(token))).status == 401
    bob = await _json(await client.get("/api/people", headers=ADMIN), 200)
    bob_id = next(p["id"] for p in bob["people"] if p["name"] == "bob")
    await _json(await client.delete(f"/api/people/{bob_id}", headers=ADMIN), 200)
    assert (await client.get("/api/queues", headers=bearer(other))).status == 401
    # A role change counts from the next request.
    _, carl = await _person(client, "carl", "supervisor")
    assert (await client.get("/api/people", headers=bearer(carl))).status == 403
    carl_id = next(
        p["id"]
        for p in (await _json(await client.get("/api/people"), 200))["people"]
        if p["name"] == "carl"
    )
    await _json(await client.patch(f"/api/people/{carl_id}", json={"role": "admin"}), 200)
    assert (await client.get("/api/people", headers=bearer(carl))).status == 200


async def test_integration_tokens_have_a_role_and_can_be_revoked(client: Client) -> None:
    made = await _json(
        await client.post("/api/integrations", json={"label": "crm-sync", "role": "supervisor"}),
        201,
    )
    crm = bearer(made["token"])
    who = await _json(await client.get("/api/session", headers=crm), 200)
    assert who["who"] == "supervisor:crm-sync" and who["kind"] == "integration"
    assert (await client.get("/api/customers", headers=crm)).status == 200
    assert (await client.post("/api/agents", json={}, headers=crm)).status == 403
    listed = await _json(await client.get("/api/integrations"), 200)
    assert made["token"] not in str(listed)
    gone = await client.delete(f"/api/integrations/{made['integration']['id']}")
    assert gone.status == 204
    assert (await client.get("/api/customers", headers=crm)).status == 401
    assert (await client.delete(f"/api/integrations/{made['integration']['id']}")).status == 404


async def test_an_agent_token_opens_the_desk_not_the_api_and_can_be_replaced(
    client: Client, pool: Any
) -> None:
    agent_id, token = await _agent(client)
    assert (await client.get("/api/queues", headers=bearer(token))).status == 403
    who = await _json(await client.get("/api/session", headers=bearer(token)), 200)
    assert who["who"] == "agent:ada"
    agent = await _json(await client.get(f"/api/agents/{agent_id}"), 200)
    assert agent["token_expires_at"] is not None
    reset = await _json(await client.post(f"/api/agents/{agent_id}/token"), 201)
    assert (await client.get("/agent/session", headers=bearer(token))).status == 401
    assert (await client.get("/agent/session", headers=bearer(reset["token"]))).status == 200
    ws = await client.ws_connect(f"/ws/agent?token={reset['token']}")
    assert (await ws.receive_json())["type"] == "state"
    await ws.close()
    refused = await client.get(f"/ws/agent?token={token}")
    assert refused.status == 401


async def test_an_expired_agent_token_is_refused(client: Client, pool: Any) -> None:
    agent_id, token = await _agent(client)
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE agents SET token_expires_at = now() - interval '1 second' WHERE id = $1",
            agent_id,
        )
    assert (await client.get("/agent/session", headers=bearer(token))).status == 401


async def _seen(pool: Any, agent_id: int) -> Any:
    return await pool.fetchval(
        "SELECT last_seen_at FROM agent_presence WHERE agent_id = $1", agent_id
    )


@pytest.mark.parametrize("why", ["expired", "replaced", "removed"])
async def test_a_token_that_opens_nothing_opens_no_socket_and_marks_nobody_seen(
    client: Client, pool: Any, why: str
) -> None:
    """The socket's token look-up marks the agent seen in the same statement: a token
    that opens nothing is refused as ever (401, the same words) and leaves no presence."""
    agent_id, token = await _agent(client)
    if why == "expired":
        await pool.execute(
            "UPDATE agents SET token_expires_at = now() - interval '1 second' WHERE id = $1",
            agent_id,
        )
    elif why == "replaced":
        await _json(await client.post(f"/api/agents/{agent_id}/token"), 201)
    else:
        await _json(await client.delete(f"/api/agents/{agent_id}"), 200)
    refused = await client.get(f"/ws/agent?token={token}")
    assert refused.status == 401
    assert (await refused.json())["detail"] == "unknown agent token"
    assert await _seen(pool, agent_id) is None


async def test_a_socket_that_opens_marks_its_agent_seen(client: Client, pool: Any) -> None:
    agent_id, token = await _agent(client)
    assert await _seen(pool, agent_id) is None
    ws = await client.ws_connect(f"/ws/agent?token={token}")
    assert (await ws.receive_json())["type"] == "state"
    assert await _seen(pool, agent_id) is not None
    await ws.close()


async def test_a_removed_agent_is_offline_and_out_of_the_list(client: Client, pool: Any) -> None:
    agent_id, token = await _agent(client)
    ws = await client.ws_connect(f"/ws/agent?token={token}")
    assert (await ws.receive_json())["type"] == "state"
    await ws.send_json({"type": "available"})
    removed = await _json(await client.delete(f"/api/agents/{agent_id}"), 200)
    assert removed["state"] == "offline" and removed["removed_at"] is not None
    listed = await _json(await client.get("/api/agents"), 200)
    assert agent_id not in [a["id"] for a in listed["agents"]]
    assert (await client.get("/agent/session", headers=bearer(token))).status == 401
    # Its open socket is closed by the hub that holds it.
    # The close frame the panel gets says why (the client's own close code may read 1006
    # if the server has let go of the connection before the client's reply arrives).
    closing = await ws.receive(timeout=10)
    while closing.type is WSMsgType.TEXT:
        closing = await ws.receive(timeout=10)
    assert closing.type is WSMsgType.CLOSE and closing.data == 4401, closing
    # Its history keeps its name.
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT name FROM agents WHERE id = $1", agent_id) == "ada"


async def test_an_available_after_the_removal_leaves_the_agent_offline(
    client: Client, pool: Any
) -> None:
    """The panel's ``available`` still in flight when the agent is removed (its socket
    not closed yet), or blocked behind the removal's lock until it commits, finds a
    removed agent: refused, so no call is offered to somebody who is gone."""
    agent_id, _ = await _agent(client)
    await _json(await client.delete(f"/api/agents/{agent_id}"), 200)
    async with pool.acquire() as conn:
        assert await agents.set_available(conn, agent_id) is False
        assert await conn.fetchval("SELECT state FROM agents WHERE id = $1", agent_id) == "offline"


@pytest.mark.parametrize("wrap_up_seconds", [0, 300])
async def test_an_agent_removed_on_a_call_is_offline_once_the_call_is_over(
    client: Client, pool: Any, wrap_up_seconds: int
) -> None:
    """The call goes on after the removal and ends as usual; what would then make
    the agent available (no wrap-up, or the wrap-up's clock) leaves it offline."""
    await make_queue(client, "general", wrap_up_seconds=wrap_up_seconds)
    agent_id, token = await make_agent(client, "ada")
    _, _, shown = await take_call(client, token, "pbx-1")
    await _json(await client.delete(f"/api/agents/{agent_id}"), 200)
    await end_call(client, shown["call_id"])
    if wrap_up_seconds:
        assert await agent_state(pool, agent_id) == "wrap_up"
        await wrap_up_clock_ends(pool, agent_id)
    assert await agent_state(pool, agent_id) == "offline"


# -- the matrix ----------------------------------------------------------------------


def _fill(path: str) -> str:
    return re.sub(
        r"\{[a-z_]+\}", lambda m: "general" if m.group(0) == "{queue}" else "999999", path
    )


async def test_access_matrix_every_route_for_every_principal(client: Client) -> None:
    _, agent_token = await _agent(client)
    _, supervisor = await _person(client, "sup", "supervisor")
    _, admin = await _person(client, "adm", "admin")
    crm = await _json(
        await client.post("/api/integrations", json={"label": "crm", "role": "supervisor"}), 201
    )
    callers: dict[str, dict[str, str]] = {
        "anonymous": NOBODY,
        "agent": bearer(agent_token),
        "supervisor": bearer(supervisor),
        "integration": bearer(crm["token"]),
        "admin": bearer(admin),
    }
    rank = {"anonymous": 0, "agent": 1, "supervisor": 2, "integration": 2, "admin": 3}
    need = {"agent": 1, "supervisor": 2, "admin": 3}
    document = await _json(await client.get("/openapi.json"), 200)
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    cells = 0
    wrong: list[str] = []
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            access = op.get("x-access", "public" if "security" not in op else None)
            if method == "delete" and path == "/api/session":
                continue  # signing out ends the caller's own session; tested above
            for who, headers in callers.items():
                resp = await client.request(
                    method.upper(),
                    _fill(path),
                    json={},
                    # The client sends the admin token unless a caller's header replaces it.
                    headers={"Authorization": headers.get("Authorization", "")},
                )
                cells += 1
                if access in need:
                    assert "401" in op["responses"] and "403" in op["responses"], path
                    if rank[who] == 0:
                        expected = {401}
                    elif rank[who] < need[access]:
                        expected = {403}
                    else:
                        expected = None  # let in: anything but 401/403
                else:
                    expected = None
                status = resp.status
                if expected is not None and status not in expected:
                    wrong.append(f"{who} {method.upper()} {path}: {status}, expected {expected}")
                if expected is None and access in need and status in (401, 403):
                    wrong.append(f"{who} {method.upper()} {path}: {status}, should be let in")
                if status >= 500:
                    wrong.append(f"{who} {method.upper()} {path}: {status}")
    assert cells > 200
    assert not wrong, "\n".join(wrong)

    # Beyond the document: the socket, the page, the scrape and the webhooks.
    assert (await client.get("/ws/agent", headers=NOBODY)).status == 401
    assert (await client.get("/ws/agent", headers=bearer(supervisor))).status == 401
    assert (await client.get("/agent", headers=NOBODY)).status == 200
    assert (await client.get("/metrics", headers=NOBODY)).status == 200
    generic = await client.post(
        "/telephony/generic/events", json={"type": "call.hangup", "call_id": "x"}, headers=ADMIN
    )
    assert generic.status == 403  # a peer signs; no token of ours opens it
    twilio = await client.post("/telephony/twilio/voice", data={"CallSid": "CA1"}, headers=ADMIN)
    assert twilio.status == 403


async def test_metrics_may_need_a_scrape_token(app_factory: AppFactory) -> None:
    client = await app_factory(metrics_token=SecretStr("scrape-me"), headers=NOBODY)
    assert (await client.get("/metrics")).status == 401
    assert (await client.get("/metrics", headers=ADMIN)).status == 401
    assert (await client.get("/metrics", headers=bearer("scrape-me"))).status == 200


@pytest.mark.parametrize("role", ["supervisor", "admin"])
async def test_the_cli_adds_a_user_who_can_sign_in(
    role: str, db_url: str, client: Client, tmp_path: Any
) -> None:
    import asyncio
    import os
    import sys

    env = os.environ | {"CALLCENTER_DATABASE_URL": db_url, "COLUMNS": "500"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "callcenter",
        "user",
        "add",
        "zoe",
        "--role",
        role,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    password = re.search(r"^password (\S+)$", out.decode(), re.M)
    assert password is not None, out.decode()
    session = await _json(
        await client.post("/api/session", json={"name": "zoe", "password": password.group(1)}),
        201,
    )
    who = await _json(await client.get("/api/session", headers=bearer(session["token"])), 200)
    assert who["who"] == f"{role}:zoe"


async def test_passwords_are_stored_hashed(client: Client, pool: asyncpg.Pool[Any]) -> None:
    await _json(
        await client.post(
            "/api/people",
            json={"name": "ann", "role": "admin", "password": "correct horse battery"},
        ),
        201,
    )
    async with pool.acquire() as conn:
        stored = await conn.fetchval("SELECT password_hash FROM people WHERE name = 'ann'")
    assert stored.startswith("$argon2id$") and "correct horse" not in stored


async def test_the_access_log_keeps_no_token_and_no_whole_number(
    settings: Any,
    pool: Any,
    aiohttp_client: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from aiohttp.test_utils import TestServer

    from callcenter.app import create_app
    from callcenter.http.logs import AccessLogger

    server = TestServer(create_app(settings, pool=pool))
    await server.start_server(access_log_class=AccessLogger)
    client = await aiohttp_client(server, headers=ADMIN)
    with caplog.at_level(logging.INFO, logger="aiohttp.access"):
        await client.get("/api/customers?phone=%2B12125550100")
        await client.get("/ws/agent?token=secret-agent-token")
        await client.delete("/api/customers/9/phones/%2B12125550199")
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert len(lines) == 3, lines
    text = "\n".join(lines)
    assert "secret-agent-token" not in text and "token=[redacted]" in text
    assert "2125550100" not in text and "phone=+…0100" in text
    assert "2125550199" not in text and "/phones/+…0199" in text


async def test_the_docs_page_runs_nothing(client: Client) -> None:
    resp = await client.get("/docs")
    assert resp.status == 200
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]


@pytest.mark.parametrize("path", ["/api/customers", "/telephony/generic/events"])
async def test_a_body_that_stalls_is_a_408_not_a_held_connection(
    app_factory: AppFactory, path: str
) -> None:
    import asyncio

    client = await app_factory(
        body_read_seconds=0.5, generic_webhook_secret=SecretStr("s"), headers=NOBODY
    )
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {ADMIN['Authorization'].split()[1]}\r\n"
            'Content-Length: 100\r\n\r\n{"customer'.encode()
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=15)
        assert status_line.split()[1] == b"408", status_line
    finally:
        writer.close()
