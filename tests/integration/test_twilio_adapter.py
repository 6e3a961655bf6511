"""The Twilio adapter end to end: signed form posts in, TwiML back, REST updates to a fake API."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import asyncpg
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from tests.conftest import AppFactory
from tests.integration.queue_helpers import FAST, eventually, make_customer
from tests.integration.telephony_fakes import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    PUBLIC_URL,
    FakeTwilioAPI,
    call_sid,
    post_twilio,
    voice_params,
)
from tests.integration.telephony_helpers import (
    accept_next_offer,
    available_panel,
    make_agent_with_endpoint,
)

ServerFactory = Callable[..., Awaitable[TestServer]]


async def _twilio_app(
    app_factory: AppFactory, api: TestServer | None = None, **changes: Any
) -> TestClient[Any, Any]:
    settings: dict[str, Any] = FAST | {
        "twilio_auth_token": SecretStr(AUTH_TOKEN),
        "twilio_account_sid": ACCOUNT_SID,
        "public_url": PUBLIC_URL,
        "connect_backoff_seconds": 0.05,
    }
    if api is not None:
        settings["twilio_api_base"] = str(api.make_url("")).rstrip("/")
    return await app_factory(**(settings | changes))


def _xml(text: str) -> ET.Element:
    root = ET.fromstring(text)
    assert root.tag == "Response"
    return root


def _status_params(sid: str, caller: str, **more: str) -> list[tuple[str, str]]:
    params = [p for p in voice_params(sid, caller) if p[0] != "CallStatus"]
    return [*params, *more.items()]


async def _calls(pool: asyncpg.Pool[Any]) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM calls")
    return count


async def _true(value: bool) -> bool:
    return value


async def test_a_call_is_enqueued_waits_is_connected_by_rest_and_completes(
    app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    fake = FakeTwilioAPI()
    api = await aiohttp_server(fake.app(), host="127.0.0.1")
    client = await _twilio_app(app_factory, api)
    await client.put("/api/queues/general", json={"wrap_up_seconds": 30})
    customer_id = await make_customer(client, "C-1", 30000, "+12125550100")
    agent_id, token = await make_agent_with_endpoint(client, "ada", "client:ada")
    sid = call_sid(1)

    status, text = await post_twilio(
        client, "/telephony/twilio/voice", voice_params(sid, "+12125550100")
    )
    assert status == 200, text
    root = _xml(text)
    enqueue = root.find("Enqueue")
    assert enqueue is not None and enqueue.text == "general"
    assert enqueue.get("waitUrl") == f"{PUBLIC_URL}/telephony/twilio/wait"
    assert enqueue.get("action") == f"{PUBLIC_URL}/telephony/twilio/status"
    assert root.find("Gather") is None
    # Twilio retries the webhook: the same TwiML, still one call.
    status, again = await post_twilio(
        client, "/telephony/twilio/voice", voice_params(sid, "+12125550100")
    )
    assert status == 200 and _xml(again).find("Enqueue") is not None
    assert await _calls(pool) == 1

    wait_params = _status_params(sid, "+12125550100", CallStatus="in-progress", QueuePosition="1")
    status, text = await post_twilio(client, "/telephony/twilio/wait", wait_params)
    wait = _xml(text)
    say = wait.find("Say")
    assert say is not None and "number 1 in line" in (say.text or "")
    assert wait.find("Play") is not None

    panel = await available_panel(client, token)
    call_id = await accept_next_offer(panel)
    await eventually(lambda: _true(bool(fake.updates)))
    assert len(fake.updates) == 1
    updated_sid, form = fake.updates[0]
    assert updated_sid == sid
    dial = _xml(form["Twiml"]).find("Dial")
    assert dial is not None and dial.findtext("Client") == "ada"
    # The action names this connect, so a repeated report of it is told from a later one.
    assert dial.get("action") == f"{PUBLIC_URL}/telephony/twilio/dial?bridge=1"

    # The Enqueue action after our redirect changes nothing.
    status, _ = await post_twilio(
        client,
        "/telephony/twilio/status",
        _status_params(sid, "+12125550100", CallStatus="in-progress", QueueResult="redirected"),
    )
    assert status == 200
    call = await (await client.get(f"/api/calls/{call_id}")).json()
    assert call["state"] == "connected" and call["agent_id"] == agent_id

    status, _ = await post_twilio(
        client,
        "/telephony/twilio/status",
        _status_params(sid, "+12125550100", CallStatus="completed", CallDuration="187"),
    )
    assert status == 200
    call = await (await client.get(f"/api/calls/{call_id}")).json()
    assert call["state"] == "completed" and call["end_reason"] == "hangup: completed"
    await panel.state("wrap_up")
    history = await (await client.get(f"/api/customers/{customer_id}/history")).json()
    assert history["interactions"][0]["outcome"] == "completed"
    await panel.close()


async def test_a_caller_who_hangs_up_in_the_queue_is_abandoned(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await _twilio_app(app_factory)
    sid = call_sid(2)
    await post_twilio(client, "/telephony/twilio/voice", voice_params(sid, "+12125550102"))
    status, text = await post_twilio(
        client,
        "/telephony/twilio/status",
        _status_params(sid, "+12125550102", CallStatus="completed", QueueResult="hangup"),
    )
    assert status == 200 and _xml(text).find("*") is None
    row = await pool.fetchrow("SELECT state, end_reason FROM calls")
    assert (row["state"], row["end_reason"]) == ("abandoned", "hangup: queue hangup")
    # The status callback that follows leaves it abandoned.
    status, _ = await post_twilio(
        client,
        "/telephony/twilio/status",
        _status_params(sid, "+12125550102", CallStatus="completed"),
    )
    assert status == 200
    assert await pool.fetchval("SELECT state FROM calls") == "abandoned"
    assert await pool.fetchval("SELECT count(*) FROM waiting_calls") == 0
    # The wait URL, asked once more by a slow Twilio, hangs up.
    status, text = await post_twilio(
        client, "/telephony/twilio/wait", _status_params(sid, "+12125550102")
    )
    assert _xml(text).find("Hangup") is not None


async def test_a_status_callback_before_the_voice_webhook_never_queues(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await _twilio_app(app_factory)
    sid = call_sid(3)
    status, _ = await post_twilio(
        client,
        "/telephony/twilio/status",
        _status_params(sid, "+12125550103", CallStatus="canceled"),
    )
    assert status == 200
    status, text = await post_twilio(
        client, "/telephony/twilio/voice", voice_params(sid, "+12125550103")
    )
    assert status == 200 and _xml(text).find("Hangup") is not None
    assert await pool.fetchval("SELECT state FROM calls") == "abandoned"
    assert await pool.fetchval("SELECT count(*) FROM waiting_calls") == 0


async def test_unknown_callers_are_asked_for_a_customer_number(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await _twilio_app(app_factory, twilio_gather_unknown=True)
    await make_customer(client, "4711", 6000, "+12125550147")
    sid = call_sid(4)
    caller = "+442079460018"
    status, text = await post_twilio(client, "/telephony/twilio/voice", voice_params(sid, caller))
    root = _xml(text)
    gather = root.find("Gather")
    assert gather is not None and gather.get("finishOnKey") == "#"
    action = gather.get("action")
    assert action == f"{PUBLIC_URL}/telephony/twilio/voice?queue=general&try=1"
    assert root.find("Enqueue") is not None  # no input: falls through to the queue
    path = action.removeprefix(PUBLIC_URL)
    # Wrong number: told so and asked once more.
    status, text = await post_twilio(
        client, path, voice_params(sid, caller, CallStatus="in-progress", Digits="999")
    )
    root = _xml(text)
    assert "could not find" in (root.findtext("Say") or "")
    retry = root.find("Gather")
    assert retry is not None and retry.get("action", "").endswith("try=2")
    status, text = await post_twilio(
        client,
        "/telephony/twilio/voice?queue=general&try=2",
        voice_params(sid, caller, CallStatus="in-progress", Digits="4711", FinishedOnKey="#"),
    )
    assert status == 200 and _xml(text).find("Gather") is None
    row = await pool.fetchrow(
        "SELECT tier, identified_by, customer_id, link_phone, link_customer_id FROM calls"
    )
    # Served as 4711 for this call; the phone waits for the agent to confirm who calls.
    assert row["tier"] == "gold" and row["identified_by"] == "pending"
    assert row["link_phone"] == caller and row["link_customer_id"] == row["customer_id"]


async def test_an_agent_who_does_not_answer_sends_the_caller_back(
    app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    fake = FakeTwilioAPI(fail=1)
    api = await aiohttp_server(fake.app(), host="127.0.0.1")
    client = await _twilio_app(app_factory, api)
    _, token = await make_agent_with_endpoint(client, "ada", "sip:ada@pbx.example")
    panel = await available_panel(client, token)
    sid = call_sid(5)
    await post_twilio(client, "/telephony/twilio/voice", voice_params(sid, "+12125550105"))
    call_id = await accept_next_offer(panel)
    # The first REST call fails (500) and is retried.
    await eventually(lambda: _true(bool(fake.updates)))
    assert fake.refused == 1
    assert _xml(fake.updates[0][1]["Twiml"]).findtext("Dial/Sip") == "sip:ada@pbx.example"
    key = await pool.fetchval("SELECT service_key FROM calls WHERE id = $1", call_id)

    status, text = await post_twilio(
        client,
        "/telephony/twilio/dial",
        _status_params(sid, "+12125550105", CallStatus="in-progress", DialCallStatus="no-answer"),
    )
    assert status == 200
    redirect = _xml(text).find("Redirect")
    assert redirect is not None
    assert redirect.text == f"{PUBLIC_URL}/telephony/twilio/voice?queue=general"
    await panel.state("not_responding")
    row = await pool.fetchrow(
        "SELECT c.state, w.service_key FROM calls c JOIN waiting_calls w ON w.call_id = c.id"
    )
    assert row["state"] == "waiting" and row["service_key"] == key
    # Back at the voice URL, the caller is enqueued again (not a new call).
    status, text = await post_twilio(
        client, "/telephony/twilio/voice?queue=general", voice_params(sid, "+12125550105")
    )
    assert _xml(text).find("Enqueue") is not None
    assert await _calls(pool) == 1
    # Said available again, the agent gets it, and it connects again.
    await panel.send(type="available")
    assert await accept_next_offer(panel) == call_id
    await eventually(lambda: _true(len(fake.updates) == 2))
    await panel.close()


async def test_bad_requests_are_refused_and_store_nothing(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await _twilio_app(app_factory, webhook_max_bytes=2048)
    params = voice_params(call_sid(6), "+12125550106")
    path = "/telephony/twilio/voice"
    refused = [
        await post_twilio(client, path, params, signature=""),
        await post_twilio(client, path, params, token="wrong-token"),
        # Signed for another URL: the proxy's public URL must be configured right.
        await post_twilio(client, path, params, public_url="https://elsewhere.example.com"),
        # A parameter changed after signing.
        await post_twilio(
            client,
            path,
            [*params[:-1], ("ToCountry", "FR")],
            signature=(await _signature_of(params, path)),
        ),
    ]
    for status, text in refused:
        assert status == 403, text
        assert "Invalid signature" in text
    resp = await client.post(
        path, data=b"CallSid=CA1&&&", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert resp.status == 400
    resp = await client.post(path, json={"CallSid": "CA1"})
    assert resp.status == 400
    status, text = await post_twilio(client, path, [("From", "+12125550106")])
    assert status == 422 and "CallSid" in text
    status, text = await post_twilio(client, path, [*params, ("Pad", "x" * 3000)])
    assert status == 413
    assert await _calls(pool) == 0
    unconfigured = await app_factory(**FAST)
    status, text = await post_twilio(unconfigured, path, params)
    assert status == 403 and "CALLCENTER_TWILIO_AUTH_TOKEN" in text
    assert await _calls(pool) == 0


async def _signature_of(params: list[tuple[str, str]], path: str, base: str = PUBLIC_URL) -> str:
    from tests.integration.telephony_fakes import twilio_signature

    return twilio_signature(AUTH_TOKEN, base + path, params)


async def test_a_long_sip_caller_id_is_taken_as_withheld(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await _twilio_app(app_factory)
    caller = "sip:" + "a" * 80 + "@trunk.example.com"
    status, text = await post_twilio(
        client, "/telephony/twilio/voice", voice_params(call_sid(8), caller)
    )
    assert status == 200 and _xml(text).find("Enqueue") is not None
    assert await pool.fetchval("SELECT ani FROM calls") is None


async def test_without_a_public_url_the_request_url_is_signed(app_factory: AppFactory) -> None:
    client = await _twilio_app(app_factory, public_url=None)
    base = str(client.make_url("")).rstrip("/")
    params = voice_params(call_sid(7), "+12125550107")
    status, text = await post_twilio(client, "/telephony/twilio/voice", params, public_url=base)
    assert status == 200, text
    enqueue = _xml(text).find("Enqueue")
    assert enqueue is not None and enqueue.get("waitUrl") == f"{base}/telephony/twilio/wait"


async def test_odd_but_signed_requests_are_answered_never_500(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await _twilio_app(app_factory, twilio_gather_unknown=True)
    # A caller ID PostgreSQL cannot store is taken as withheld, like a too long one.
    status, text = await post_twilio(
        client, "/telephony/twilio/voice", voice_params(call_sid(20), "+1212\x00555")
    )
    assert status == 200 and _xml(text).find("Enqueue") is not None, text
    assert await pool.fetchval("SELECT ani FROM calls") is None
    # A try counter that is not a small number counts as the last try.
    for tries in ["%C2%B2", "9" * 5000, "-1"]:
        path = f"/telephony/twilio/voice?queue=general&try={tries}"
        status, text = await post_twilio(
            client, path, voice_params(call_sid(20), "+12125550120", Digits="999")
        )
        assert status == 200, (tries[:10], text)
        assert _xml(text).find("Gather") is None and _xml(text).find("Enqueue") is not None
    status, text = await post_twilio(
        client, "/telephony/twilio/voice", voice_params(call_sid(20), "+1", Digits="1\x002")
    )
    assert status == 422 and "digits" in text
    assert await _calls(pool) == 1


async def test_a_host_header_that_is_no_url_is_400_not_500(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    """Without PUBLIC_URL the signed URL is rebuilt from Host, which anyone can send."""
    client = await _twilio_app(app_factory, public_url=None)
    params = voice_params(call_sid(21), "+12125550121")
    for host in ["cc.example.com:abc", "[::1", "cc.example.com:99999"]:
        resp = await client.post(
            "/telephony/twilio/voice",
            data=urlencode(params),
            headers={
                "Host": host,
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": "c2lnbmF0dXJl",
            },
        )
        assert resp.status == 400, (host, await resp.text())
        assert "Host" in (await resp.json())["detail"]
    assert await _calls(pool) == 0


async def _connected_call(
    client: TestClient[Any, Any], fake: FakeTwilioAPI, sid: str, caller: str, token: str
) -> tuple[int, Any]:
    """Hand a call in, let the agent behind ``token`` accept it, wait for the REST update."""
    await post_twilio(client, "/telephony/twilio/voice", voice_params(sid, caller))
    panel = await available_panel(client, token)
    call_id = await accept_next_offer(panel)
    await eventually(lambda: _true(any(u[0] == sid for u in fake.updates)))
    return call_id, panel


async def test_a_caller_who_hangs_up_while_the_agent_rings_is_not_requeued(
    app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    """The <Dial action> after the caller hung up carries the caller's terminal CallStatus:
    the call ends (the agent goes to wrap-up), it is not put back in the queue for a
    caller who is gone, and the agent is not marked not responding."""
    fake = FakeTwilioAPI()
    api = await aiohttp_server(fake.app(), host="127.0.0.1")
    client = await _twilio_app(app_factory, api)
    await client.put("/api/queues/general", json={"wrap_up_seconds": 30})
    _, token = await make_agent_with_endpoint(client, "ada", "client:ada")
    sid = call_sid(30)
    call_id, panel = await _connected_call(client, fake, sid, "+12125550130", token)
    status, text = await post_twilio(
        client,
        "/telephony/twilio/dial",
        _status_params(sid, "+12125550130", CallStatus="completed", DialCallStatus="no-answer"),
    )
    assert status == 200 and _xml(text).find("Redirect") is None
    row = await pool.fetchrow("SELECT state, end_reason FROM calls WHERE id = $1", call_id)
    assert row["state"] == "completed", dict(row)
    assert await pool.fetchval("SELECT count(*) FROM waiting_calls") == 0
    await panel.state("wrap_up")
    await panel.close()


async def test_a_connect_for_a_caller_already_gone_ends_the_call_at_once(
    app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    """The caller hung up and the status callback is late (or lost): Twilio refuses the
    update with 21220. Retrying cannot help and requeueing would offer a caller who is
    gone to the next agent: the call ends, the agent goes to wrap-up, not 'not responding'."""
    fake = FakeTwilioAPI()
    api = await aiohttp_server(fake.app(), host="127.0.0.1")
    client = await _twilio_app(app_factory, api)
    await client.put("/api/queues/general", json={"wrap_up_seconds": 30})
    _, token = await make_agent_with_endpoint(client, "ada", "client:ada")
    sid = call_sid(31)
    await post_twilio(client, "/telephony/twilio/voice", voice_params(sid, "+12125550131"))
    fake.ended.add(sid)
    panel = await available_panel(client, token)
    call_id = await accept_next_offer(panel)

    async def ended() -> bool:
        state = await pool.fetchval("SELECT state FROM calls WHERE id = $1", call_id)
        return bool(state == "completed")

    await eventually(ended)
    await panel.state("wrap_up")
    assert fake.tried_ended == 1 and fake.updates == []
    reason = await pool.fetchval("SELECT end_reason FROM calls WHERE id = $1", call_id)
    assert "21220" in reason
    assert await pool.fetchval("SELECT count(*) FROM waiting_calls") == 0
    bridge = await pool.fetchrow("SELECT state, attempts FROM call_bridges")
    assert bridge["state"] == "failed"
    # The late status callback changes nothing.
    status, _ = await post_twilio(
        client,
        "/telephony/twilio/status",
        _status_params(sid, "+12125550131", CallStatus="completed"),
    )
    assert status == 200
    assert await pool.fetchval("SELECT state FROM calls WHERE id = $1", call_id) == "completed"
    await panel.close()


async def _bridge(pool: asyncpg.Pool[Any], call_id: int) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await pool.fetchrow(
        "SELECT id, state, attempts, last_error FROM call_bridges"
        " WHERE call_id = $1 AND state <> 'failed'",
        call_id,
    )
    return row


async def _timed_out_connect(
    app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any], n: int
) -> tuple[TestClient[Any, Any], FakeTwilioAPI, str, int, Any]:
    """A connect whose REST update Twilio carries out but answers after our timeout."""
    fake = FakeTwilioAPI(delay=1.0)
    api = await aiohttp_server(fake.app(), host="127.0.0.1")
    client = await _twilio_app(app_factory, api, connect_timeout_seconds=0.3, connect_attempts=3)
    _, token = await make_agent_with_endpoint(client, "ada", "client:ada")
    sid = call_sid(n)
    await post_twilio(client, "/telephony/twilio/voice", voice_params(sid, "+12125550140"))
    panel = await available_panel(client, token)
    call_id = await accept_next_offer(panel)

    async def settled() -> bool:
        bridge = await _bridge(pool, call_id)
        return bridge is not None and bridge["state"] != "claimed"

    await eventually(settled)
    return client, fake, sid, call_id, panel


async def test_a_timed_out_connect_is_neither_repeated_nor_requeued(
    app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    """A timeout says nothing about whether Twilio moved the caller. Sending the update
    again would ring the agent twice (cutting a conversation that began); putting the
    call back in the queue would let a second agent's connect pull the caller away from
    the first. The call stays with its agent, and Twilio's own callbacks settle it."""
    client, fake, sid, call_id, panel = await _timed_out_connect(
        app_factory, aiohttp_server, pool, 40
    )
    bridge = await _bridge(pool, call_id)
    assert bridge is not None and bridge["state"] == "connected"
    assert "unknown" in bridge["last_error"]
    await asyncio.sleep(1.2)  # longer than every retry would have taken
    assert len(fake.updates) == 1
    call = await (await client.get(f"/api/calls/{call_id}")).json()
    assert call["state"] == "connected"
    assert await pool.fetchval("SELECT state FROM agents") == "on_call"
    # The update had been carried out: the agent did not answer, Twilio says so.
    status, text = await post_twilio(
        client,
        "/telephony/twilio/dial",
        _status_params(sid, "+12125550140", CallStatus="in-progress", DialCallStatus="no-answer"),
    )
    assert status == 200 and _xml(text).find("Redirect") is not None
    await panel.state("not_responding")
    assert await pool.fetchval("SELECT state FROM calls WHERE id = $1", call_id) == "waiting"
    await panel.close()


async def test_a_caller_still_in_twilios_queue_after_a_lost_connect_goes_back(
    app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    """If the update whose answer timed out never took effect, Twilio keeps asking the
    wait URL for that caller: long after a connect, that proves the caller is still in
    Twilio's queue, so the call goes back to ours (key kept) instead of staying stuck
    with an agent whose phone never rang."""
    client, fake, sid, call_id, panel = await _timed_out_connect(
        app_factory, aiohttp_server, pool, 41
    )
    wait_params = _status_params(sid, "+12125550140", CallStatus="in-progress")
    # Soon after the connect, a wait request may have been on its way: no change.
    status, text = await post_twilio(client, "/telephony/twilio/wait", wait_params)
    assert status == 200 and _xml(text).find("Play") is not None
    assert await pool.fetchval("SELECT state FROM calls WHERE id = $1", call_id) == "connected"
    # A minute later Twilio still plays the caller our wait music: the connect was lost.
    await pool.execute(
        "UPDATE call_bridges SET connected_at = connected_at - interval '2 minutes'"
        " WHERE call_id = $1",
        call_id,
    )
    status, text = await post_twilio(client, "/telephony/twilio/wait", wait_params)
    assert status == 200
    assert "number 1 in line" in (_xml(text).findtext("Say") or "")
    assert await pool.fetchval("SELECT state FROM calls WHERE id = $1", call_id) == "waiting"
    await panel.state("not_responding")
    assert await _bridge(pool, call_id) is None
    # Said available again, the agent gets it once more and a new connect goes out.
    fake.delay = 0
    await panel.send(type="available")
    assert await accept_next_offer(panel) == call_id
    await eventually(lambda: _true(len(fake.updates) == 2))
    await panel.close()


async def test_a_full_twilio_queue_holds_the_caller_with_music_not_a_silent_loop(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    """Twilio's queue holds 100 (or 1000) callers; ours holds more. On queue-full the
    caller is not in Twilio's queue but still in ours (and a REST update reaches any
    live call): they hear their position and music, then try Twilio's queue again,
    instead of a one-second silent redirect loop of two webhooks a second."""
    client = await _twilio_app(app_factory, twilio_hold_music_url="https://music.example/hold.mp3")
    sid = call_sid(50)
    await post_twilio(client, "/telephony/twilio/voice", voice_params(sid, "+12125550150"))
    status, text = await post_twilio(
        client,
        "/telephony/twilio/status",
        _status_params(sid, "+12125550150", CallStatus="in-progress", QueueResult="queue-full"),
    )
    assert status == 200
    verbs = [child.tag for child in _xml(text)]
    assert verbs == ["Say", "Play", "Redirect"], text
    root = _xml(text)
    assert "number 1 in line" in (root.findtext("Say") or "")
    assert root.findtext("Play") == "https://music.example/hold.mp3"
    assert root.findtext("Redirect") == f"{PUBLIC_URL}/telephony/twilio/voice?queue=general"
    assert await pool.fetchval("SELECT state FROM calls") == "waiting"


async def test_a_repeated_dial_action_cannot_take_the_call_from_the_next_agent(
    app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    """Each connect's <Dial action> names its connect. A delivery repeated after the call
    went back and was connected to another agent changes nothing: it must not requeue
    the call (whose caller is being connected to the second agent) nor blame that agent."""
    fake = FakeTwilioAPI()
    api = await aiohttp_server(fake.app(), host="127.0.0.1")
    client = await _twilio_app(app_factory, api)
    _, ada = await make_agent_with_endpoint(client, "ada", "client:ada")
    bob_id, bob = await make_agent_with_endpoint(client, "bob", "client:bob")
    sid = call_sid(60)
    call_id, ada_panel = await _connected_call(client, fake, sid, "+12125550160", ada)
    action = _xml(fake.updates[0][1]["Twiml"]).find("Dial")
    assert action is not None
    path = (action.get("action") or "").removeprefix(PUBLIC_URL)
    assert path.startswith("/telephony/twilio/dial?bridge=")
    missed = _status_params(sid, "+12125550160", CallStatus="in-progress", DialCallStatus="busy")
    status, text = await post_twilio(client, path, missed)
    assert status == 200 and _xml(text).find("Redirect") is not None
    await ada_panel.state("not_responding")

    bob_panel = await available_panel(client, bob)
    assert await accept_next_offer(bob_panel) == call_id
    await eventually(lambda: _true(len(fake.updates) == 2))
    second = _xml(fake.updates[1][1]["Twiml"]).find("Dial")
    assert second is not None and second.get("action", "").removeprefix(PUBLIC_URL) != path

    status, text = await post_twilio(client, path, missed)  # the first one, delivered again
    assert status == 200 and _xml(text).find("Redirect") is None
    call = await (await client.get(f"/api/calls/{call_id}")).json()
    assert call["state"] == "connected" and call["agent_id"] == bob_id
    assert await pool.fetchval("SELECT state FROM agents WHERE id = $1", bob_id) == "on_call"
    live = await _bridge(pool, call_id)
    assert live is not None and live["state"] == "connected"
    await ada_panel.close()
    await bob_panel.close()


async def test_the_signed_url_follows_public_url_with_a_prefix_slash_or_port(
    app_factory: AppFactory,
) -> None:
    """Twilio signs the URL it requested. A PUBLIC_URL with a trailing slash, a path
    prefix (a proxy that strips it) or an explicit default port still matches it."""
    cases = [
        ("https://cc.example.com/", "https://cc.example.com"),
        ("https://cc.example.com/cc/", "https://cc.example.com/cc"),
        # Twilio drops :443 before signing an https voice webhook; the URL it
        # requested may carry it or not.
        ("https://cc.example.com:443", "https://cc.example.com"),
        ("https://cc.example.com", "https://cc.example.com:443"),
    ]
    for n, (public_url, signed_base) in enumerate(cases):
        client = await _twilio_app(app_factory, public_url=public_url)
        params = voice_params(call_sid(70 + n), "+12125550170")
        path = "/telephony/twilio/voice?queue=general"
        status, text = await post_twilio(client, path, params, public_url=signed_base)
        assert status == 200, (public_url, text)
        enqueue = _xml(text).find("Enqueue")
        assert enqueue is not None
        assert enqueue.get("waitUrl") == public_url.rstrip("/") + "/telephony/twilio/wait"
        # The query string is part of what is signed: signed without it, refused.
        unsigned_query = await _signature_of(params, "/telephony/twilio/voice", signed_base)
        status, _ = await post_twilio(client, path, params, signature=unsigned_query)
        assert status == 403, public_url
