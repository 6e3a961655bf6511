"""Twilio callbacks end to end: the offer in the wait loop, the opt-in, the ring back.

Twilio is played by the test as it behaves on the wire: signed form posts to
our webhooks (the wait URL, the offer's <Gather action>, the outbound call's
Url, <Dial action> and StatusCallback) and a fake REST API that records the
calls we create and update. The service and PostgreSQL are real.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from callcenter import app_keys
from tests.conftest import AppFactory
from tests.integration.queue_helpers import FAST, Panel, eventually
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

CALLBACK_FROM = "+14155550199"
#: Offered at once, two rings, one second between them.
RULE = {"after_seconds": 0, "attempts": 2, "retry_seconds": 1}


async def _app(
    app_factory: AppFactory, api: TestServer | None = None, **changes: Any
) -> TestClient[Any, Any]:
    settings: dict[str, Any] = FAST | {
        "twilio_auth_token": SecretStr(AUTH_TOKEN),
        "twilio_account_sid": ACCOUNT_SID,
        "public_url": PUBLIC_URL,
        "connect_backoff_seconds": 0.05,
        "twilio_callback_from": CALLBACK_FROM,
        "callback_ring_seconds": 20,
    }
    if api is not None:
        settings["twilio_api_base"] = str(api.make_url("")).rstrip("/")
    return await app_factory(**(settings | changes))


async def _queue(
    client: TestClient[Any, Any],
    name: str = "general",
    callback: dict[str, Any] | None = RULE,
    **config: Any,
) -> None:
    body = {"wrap_up_seconds": 0, "callback": callback, **config}
    resp = await client.put(f"/api/queues/{name}", json=body)
    assert resp.status in (200, 201), await resp.text()


def _xml(text: str) -> ET.Element:
    root = ET.fromstring(text)
    assert root.tag == "Response", text
    return root


def _verbs(text: str) -> list[str]:
    return [child.tag for child in _xml(text)]


def _form(sid: str, caller: str, **more: str) -> list[tuple[str, str]]:
    """A request about the caller's own (inbound) call, as Twilio posts it."""
    params = [p for p in voice_params(sid, caller) if p[0] != "CallStatus"]
    return [*params, *more.items()]


def _leg_form(leg: str, number: str, **more: str) -> list[tuple[str, str]]:
    """A request about the outbound call we created to ring ``number`` back."""
    return [
        ("AccountSid", ACCOUNT_SID),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", leg),
        ("Called", number),
        ("Caller", CALLBACK_FROM),
        ("Direction", "outbound-api"),
        ("From", CALLBACK_FROM),
        ("To", number),
        *more.items(),
    ]


async def _true(value: bool) -> bool:
    return value


def _path(url: str | None) -> str:
    assert url is not None and url.startswith(PUBLIC_URL + "/"), url
    return url.removeprefix(PUBLIC_URL)


async def _offer_path(client: TestClient[Any, Any], sid: str, caller: str) -> str:
    """The wait loop's offer: the music inside a one-key <Gather>; its action's path."""
    status, text = await post_twilio(
        client, "/telephony/twilio/wait", _form(sid, caller, CallStatus="in-progress")
    )
    assert status == 200, text
    gather = _xml(text).find("Gather")
    assert gather is not None, text
    return _path(gather.get("action"))


async def _opt_in(client: TestClient[Any, Any], sid: str, caller: str, digits: str = "1") -> str:
    """Press 1 in the wait loop, then confirm the calling number (1) or type ``digits``."""
    offer = await _offer_path(client, sid, caller)
    status, text = await post_twilio(
        client, offer, _form(sid, caller, CallStatus="in-progress", Digits="1")
    )
    assert status == 200, text
    confirm = _xml(text).find("Gather")
    assert confirm is not None, text
    status, text = await post_twilio(
        client,
        _path(confirm.get("action")),
        _form(sid, caller, CallStatus="in-progress", Digits=digits),
    )
    assert status == 200, text
    return text


async def _caller_left(client: TestClient[Any, Any], sid: str, caller: str) -> None:
    """Twilio's reports once the caller hung up in the wait loop: the <Enqueue action>
    (QueueResult=hangup), then the call's status callback (completed)."""
    for more in (
        {"CallStatus": "completed", "QueueResult": "hangup", "QueueTime": "40"},
        {"CallStatus": "completed", "CallDuration": "52"},
    ):
        status, text = await post_twilio(
            client, "/telephony/twilio/status", _form(sid, caller, **more)
        )
        assert status == 200, text


async def _call(pool: asyncpg.Pool[Any], sid: str) -> asyncpg.Record:
    row: asyncpg.Record | None = await pool.fetchrow(
        "SELECT c.id, c.state, c.end_reason, c.service_key, c.callback_number,"
        "       c.callback_requested_at, c.callback_answered_at, w.service_key AS waiting_key,"
        "       w.give_up_at"
        "  FROM calls c LEFT JOIN waiting_calls w ON w.call_id = c.id"
        " WHERE c.external_id = $1",
        f"twilio:{sid}",
    )
    assert row is not None
    return row


async def _bridge_of(pool: asyncpg.Pool[Any], call_id: int) -> int:
    bridge: int = await pool.fetchval(
        "SELECT id FROM call_bridges WHERE call_id = $1 ORDER BY id DESC LIMIT 1", call_id
    )
    return bridge


async def _state(pool: asyncpg.Pool[Any], call_id: int, state: str) -> None:
    async def reached() -> bool:
        now = await pool.fetchval("SELECT state FROM calls WHERE id = $1", call_id)
        return bool(now == state)

    await eventually(reached)


async def _created(fake: FakeTwilioAPI, count: int) -> dict[str, str]:
    async def done() -> bool:
        return len(fake.created) >= count

    await eventually(done)
    assert len(fake.created) == count
    return fake.created[-1]


async def _updated(fake: FakeTwilioAPI, sid: str) -> None:
    """Wait for the REST update that connects call ``sid``."""

    async def done() -> bool:
        return any(u[0] == sid for u in fake.updates)

    await eventually(done)


async def _ring_answered(
    client: TestClient[Any, Any], create: dict[str, str], agent: str
) -> ET.Element:
    """The caller picks up: Twilio fetches the outbound call's Url (machine detection
    found a person). Its <Dial> to ``agent``."""
    status, text = await post_twilio(
        client,
        _path(create["Url"]),
        _leg_form(create["Sid"], create["To"], CallStatus="in-progress", AnsweredBy="human"),
    )
    assert status == 200, text
    dial = _xml(text).find("Dial")
    assert dial is not None, text
    assert dial.findtext("Client") == agent
    return dial


async def _leg_status(
    client: TestClient[Any, Any], create: dict[str, str], status: str, **more: str
) -> None:
    code, text = await post_twilio(
        client,
        _path(create["StatusCallback"]),
        _leg_form(
            create["Sid"],
            create["To"],
            CallStatus=status,
            CallbackSource="call-progress-events",
            SequenceNumber="0",
            **more,
        ),
    )
    assert code == 200, text


@dataclass
class Rung:
    """A caller who took a callback, an agent who accepted it, the ring Twilio created."""

    client: TestClient[Any, Any]
    fake: FakeTwilioAPI
    panel: Panel
    agent_id: int
    sid: str
    caller: str
    call_id: int
    create: dict[str, str]


async def _rung(
    app_factory: AppFactory,
    aiohttp_server: ServerFactory,
    n: int,
    endpoint: str = "client:ada",
    **queue: Any,
) -> Rung:
    fake = FakeTwilioAPI()
    api = await aiohttp_server(fake.app(), host="127.0.0.1")
    client = await _app(app_factory, api)
    await _queue(client, **queue)
    agent_id, ada = await make_agent_with_endpoint(client, "ada", endpoint)
    sid, caller = call_sid(n), f"+121255501{n % 100:02d}"
    await post_twilio(client, "/telephony/twilio/voice", voice_params(sid, caller))
    await _opt_in(client, sid, caller)
    await _caller_left(client, sid, caller)
    panel = await available_panel(client, ada)
    call_id = await accept_next_offer(panel)
    create = await _created(fake, 1)
    return Rung(client, fake, panel, agent_id, sid, caller, call_id, create)


# -- the offer -------------------------------------------------------------------


async def test_the_wait_loop_offers_a_callback_only_when_it_can_be_rung(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await _app(app_factory, twilio_hold_music_url="https://music.example/hold.mp3")
    sid, caller = call_sid(1), "+12125550101"
    await post_twilio(client, "/telephony/twilio/voice", voice_params(sid, caller))
    wait = _form(sid, caller, CallStatus="in-progress")
    # The queue offers no callback yet: position, then music.
    status, text = await post_twilio(client, "/telephony/twilio/wait", wait)
    assert _verbs(text) == ["Say", "Play"], text

    await _queue(client)
    status, text = await post_twilio(client, "/telephony/twilio/wait", wait)
    root = _xml(text)
    assert _verbs(text) == ["Say", "Gather"], text
    assert "number 1 in line" in (root.findtext("Say") or "")
    gather = root.find("Gather")
    assert gather is not None
    assert gather.get("numDigits") == "1" and gather.get("input") == "dtmf"
    assert gather.get("action") == f"{PUBLIC_URL}/telephony/twilio/callback?step=offer"
    assert gather.get("language") == "en-US"
    # The music plays inside the <Gather>: a key at any moment takes the offer, and
    # without one the loop goes on as before.
    assert [c.tag for c in gather] == ["Say", "Play"]
    assert "press 1 to be called back" in (gather.findtext("Say") or "").lower()
    assert gather.findtext("Play") == "https://music.example/hold.mp3"

    # Another key: no callback, back to the wait loop; nothing stored.
    status, text = await post_twilio(
        client,
        _path(gather.get("action")),
        _form(sid, caller, CallStatus="in-progress", Digits="5"),
    )
    assert (
        status == 200 and _xml(text).findtext("Redirect") == f"{PUBLIC_URL}/telephony/twilio/wait"
    )
    assert (await _call(pool, sid))["callback_number"] is None

    # Without a number to ring from, Twilio cannot ring back: nobody is offered it,
    # and a key that arrives anyway (offered before a restart) stores nothing.
    without = await _app(app_factory, twilio_callback_from=None)
    status, text = await post_twilio(without, "/telephony/twilio/wait", wait)
    print("WITHOUT", text)
    assert _verbs(text) == ["Say", "Play"], text
    status, text = await post_twilio(
        without,
        "/telephony/twilio/callback?step=confirm&try=1",
        _form(sid, caller, CallStatus="in-progress", Digits="1"),
    )
    assert status == 200 and _verbs(text) == ["Redirect"], text
    assert (await _call(pool, sid))["callback_number"] is None


# -- the whole way ---------------------------------------------------------------


async def test_a_callback_keeps_the_callers_place_rings_them_back_and_bridges(
    app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    """The same three callers wait in two queues; in one the second takes a callback and
    hangs up. Both queues are served in the same order (the claim, on the real SQL,
    finds the virtual call where the caller would have held), and the callback rings the
    caller back and bridges them to the agent who accepted."""
    fake = FakeTwilioAPI()
    api = await aiohttp_server(fake.app(), host="127.0.0.1")
    client = await _app(app_factory, api)
    await _queue(client, "general")
    await _queue(client, "control", callback=None)
    _, ada = await make_agent_with_endpoint(client, "ada", "client:ada", ["general"])
    _, bob = await make_agent_with_endpoint(client, "bob", "client:bob", ["control"])
    callers = ["+12125550101", "+12125550102", "+12125550103"]
    sids = {
        queue: [call_sid(base + i) for i in range(len(callers))]
        for queue, base in (("general", 100), ("control", 200))
    }
    for i, caller in enumerate(callers):
        for queue in ("general", "control"):
            status, text = await post_twilio(
                client,
                f"/telephony/twilio/voice?queue={queue}",
                voice_params(sids[queue][i], caller),
            )
            assert status == 200 and _xml(text).find("Enqueue") is not None, text

    sid = sids["general"][1]
    before = await _call(pool, sid)
    text = await _opt_in(client, sid, callers[1])
    assert _verbs(text) == ["Say", "Hangup"], text
    assert "call you back at 1 2 1 2 5 5 5 0 1 0 2" in (_xml(text).findtext("Say") or "")
    # The caller's own leg ends: that changes nothing, the call waits on in its place.
    await _caller_left(client, sid, callers[1])
    after = await _call(pool, sid)
    assert after["state"] == "waiting" and after["callback_number"] == callers[1]
    assert after["waiting_key"] == before["waiting_key"] == before["service_key"]
    listing = await (await client.get("/api/queues/general/calls")).json()
    assert [c["callback"] for c in listing["calls"]] == [False, True, False]
    assert [c["call_id"] for c in listing["calls"]] == [f"twilio:{s}" for s in sids["general"]]

    async def serve(token: str, queue: str, agent: str) -> list[int]:
        """One agent takes every call of ``queue`` as offered; the callers' order."""
        order = []
        panel = await available_panel(client, token)
        for _ in callers:
            offer = await panel.until(lambda m: m["type"] == "offer")
            await panel.send(type="accept", offer_id=offer["offer_id"])
            ack = await panel.until(lambda m: m["type"] == "ack" and m["to"] == "accept")
            call_id: int = ack["call_id"]
            call = await (await client.get(f"/api/calls/{call_id}")).json()
            i = sids[queue].index(call["call_id"].removeprefix("twilio:"))
            order.append(i)
            if call["callback"] is None:
                await _updated(fake, sids[queue][i])
                await post_twilio(
                    client,
                    "/telephony/twilio/status",
                    _form(sids[queue][i], callers[i], CallStatus="completed"),
                )
            else:
                # The agent is told the caller is not on the line: we ring them.
                assert offer["callback"] == callers[i]
                await ring_back(call_id, call, agent)
            await _state(pool, call_id, "completed")
        await panel.close()
        return order

    async def ring_back(call_id: int, call: dict[str, Any], agent: str) -> None:
        assert call["callback"]["number"] == callers[1] and call["state"] == "connected"
        create = await _created(fake, 1)
        bridge = await _bridge_of(pool, call_id)
        ring = f"call={sid}&bridge={bridge}"
        assert create["To"] == callers[1] and create["From"] == CALLBACK_FROM
        assert create["Timeout"] == "20"
        assert create["Url"] == f"{PUBLIC_URL}/telephony/twilio/callback/answer?{ring}"
        assert create["StatusCallback"] == f"{PUBLIC_URL}/telephony/twilio/callback/status?{ring}"
        assert create["Method"] == create["StatusCallbackMethod"] == "POST"
        assert create["StatusCallbackEvent"] == "completed"
        assert create["MachineDetection"] == "Enable"
        # Ringing: the agent waits on the call, nothing is over yet.
        assert (await _call(pool, sid))["state"] == "connected"
        dial = await _ring_answered(client, create, agent)
        assert dial.get("action") == f"{PUBLIC_URL}/telephony/twilio/callback/dial?{ring}"
        assert (await _call(pool, sid))["callback_answered_at"] is not None
        # They talk; the agent hangs up: the <Dial action> ends the caller's leg...
        status, text = await post_twilio(
            client,
            _path(dial.get("action")),
            _leg_form(
                create["Sid"],
                create["To"],
                CallStatus="in-progress",
                DialCallStatus="completed",
                DialCallSid=call_sid(999),
                DialCallDuration="95",
            ),
        )
        assert status == 200 and _verbs(text) == ["Hangup"], text
        # ... and its status callback ends the call, completed.
        await _leg_status(client, create, "completed", CallDuration="97", SipResponseCode="200")
        row = await _call(pool, sid)
        assert (row["state"], row["end_reason"]) == ("completed", "hangup: completed")
        attempt = await pool.fetchrow("SELECT leg, result FROM callback_attempts")
        assert (attempt["leg"], attempt["result"]) == (create["Sid"], "answered")

    with_callback = await serve(ada, "general", "ada")
    holding = await serve(bob, "control", "bob")
    assert with_callback == holding == [0, 1, 2]
    assert len(fake.created) == 1


# -- nobody answers --------------------------------------------------------------


async def test_a_callback_nobody_answers_frees_the_agent_rings_again_then_fails(
    app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    fake = FakeTwilioAPI()
    api = await aiohttp_server(fake.app(), host="127.0.0.1")
    client = await _app(app_factory, api)
    await _queue(client)
    _, ada = await make_agent_with_endpoint(client, "ada", "sip:ada@pbx.example")
    sid, caller = call_sid(300), "+12125550130"
    await post_twilio(client, "/telephony/twilio/voice", voice_params(sid, caller))
    # Another number, typed on the keypad without the country code.
    text = await _opt_in(client, sid, caller, digits="2125550177")
    assert "1 2 1 2 5 5 5 0 1 7 7" in (_xml(text).findtext("Say") or "")
    await _caller_left(client, sid, caller)

    panel = await available_panel(client, ada)
    call_id = await accept_next_offer(panel)
    first = await _created(fake, 1)
    assert first["To"] == "+12125550177"
    await _leg_status(client, first, "no-answer", SipResponseCode="487")
    # The agent is free at once; the call comes back after the queue's retry delay.
    await panel.state("available")
    # Twilio delivers the same report again: it changes nothing.
    await _leg_status(client, first, "no-answer", SipResponseCode="487")
    assert await pool.fetchval("SELECT count(*) FROM callback_attempts") == 1

    assert await accept_next_offer(panel) == call_id
    second = await _created(fake, 2)
    assert second["Sid"] != first["Sid"] and second["Url"] != first["Url"]
    await _leg_status(client, second, "busy", SipResponseCode="486")
    await _state(pool, call_id, "abandoned")
    await panel.state("available")
    row = await _call(pool, sid)
    assert row["end_reason"] == "callback_failed" and row["waiting_key"] is None
    attempts = await pool.fetch(
        "SELECT number, leg, result, cause FROM callback_attempts WHERE call_id = $1 ORDER BY id",
        call_id,
    )
    assert [tuple(a) for a in attempts] == [
        ("+12125550177", first["Sid"], "no_answer", "no-answer (SIP 487)"),
        ("+12125550177", second["Sid"], "no_answer", "busy (SIP 486)"),
    ]
    call = await (await client.get(f"/api/calls/{call_id}")).json()
    assert call["callback"]["attempts"] == 2
    # Every ring is in the call's timeline; nobody is asked to hang up a line nobody is on.
    events = (await (await client.get(f"/api/calls/{call_id}/timeline")).json())["events"]
    rings = [e for e in events if e["kind"] == "callback_rang"]
    assert len(rings) == 2 and all("nobody answered" in e["text"] for e in rings), rings
    assert [e["kind"] for e in events].count("callback_requested") == 1
    ended = [e for e in events if e["kind"] == "ended"]
    assert len(ended) == 1 and "nobody answered its callback" in ended[0]["text"], ended

    async def released() -> bool:
        state = await pool.fetchval("SELECT state FROM call_releases WHERE call_id = $1", call_id)
        return bool(state == "not_needed")

    await eventually(released)
    assert fake.updates == []

    # The caller picks up the first ring just as it was reported lost: let go, politely.
    status, text = await post_twilio(
        client, _path(first["Url"]), _leg_form(first["Sid"], first["To"], CallStatus="in-progress")
    )
    assert status == 200 and _verbs(text) == ["Say", "Hangup"], text
    assert (await _call(pool, sid))["state"] == "abandoned"
    await panel.close()


async def test_rings_twilio_refuses_or_never_bridges_count_as_not_answered(
    app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    fake = FakeTwilioAPI(refuse_create=1)
    api = await aiohttp_server(fake.app(), host="127.0.0.1")
    client = await _app(app_factory, api)
    await _queue(client)
    _, ada = await make_agent_with_endpoint(client, "ada", "client:ada")
    sid, caller = call_sid(310), "+12125550131"
    await post_twilio(client, "/telephony/twilio/voice", voice_params(sid, caller))
    await _opt_in(client, sid, caller)
    panel = await available_panel(client, ada)
    call_id = await accept_next_offer(panel)
    await panel.state("available")
    attempt = await pool.fetchrow("SELECT result, cause FROM callback_attempts")
    assert attempt["result"] == "failed" and "21211" in attempt["cause"]
    assert fake.created == []
    # The second ring goes out. Twilio could not fetch its answer URL (our service was
    # unreachable), played its error and hung up: completed, yet never bridged. That
    # is a ring that reached nobody, the last one: callback_failed, the agent freed.
    assert await accept_next_offer(panel) == call_id
    create = await _created(fake, 1)
    assert create["To"] == caller
    await _leg_status(client, create, "completed", CallDuration="4", SipResponseCode="200")
    await _state(pool, call_id, "abandoned")
    await panel.state("available")
    row = await _call(pool, sid)
    assert row["end_reason"] == "callback_failed"
    results = await pool.fetch("SELECT result, cause FROM callback_attempts ORDER BY id")
    assert [r["result"] for r in results] == ["failed", "failed"]
    assert "never bridged" in results[1]["cause"]
    await panel.close()


async def test_an_agent_who_misses_a_picked_up_callback_puts_the_call_back_in_its_place(
    app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    """Twilio dials the agent only once the caller picked up. If the agent's phone does
    not answer, the caller is told and let go, the call waits again as a callback with
    its key (no maximum wait: nobody holds), and the leg's end changes nothing."""
    r = await _rung(app_factory, aiohttp_server, 320, max_wait_seconds=600)
    client, fake, panel, sid, caller = r.client, r.fake, r.panel, r.sid, r.caller
    call_id, create = r.call_id, r.create
    key = (await _call(pool, sid))["service_key"]
    dial = await _ring_answered(client, create, "ada")
    status, text = await post_twilio(
        client,
        _path(dial.get("action")),
        _leg_form(create["Sid"], caller, CallStatus="in-progress", DialCallStatus="no-answer"),
    )
    assert status == 200 and _verbs(text) == ["Say", "Hangup"], text
    assert "call you back" in (_xml(text).findtext("Say") or "")
    await panel.state("not_responding")
    row = await _call(pool, sid)
    assert row["state"] == "waiting" and row["callback_answered_at"] is None
    assert row["waiting_key"] == key and row["give_up_at"] is None
    # Said available again, the agent gets it once more: a new ring, picked up.
    await panel.send(type="available")
    assert await accept_next_offer(panel) == call_id
    second = await _created(fake, 2)
    assert second["To"] == caller
    await _ring_answered(client, second, "ada")
    # The first ring's end is reported only now (its apology was long): it must not
    # end the conversation of the second.
    await _leg_status(client, create, "completed", CallDuration="30")
    row = await _call(pool, sid)
    assert row["state"] == "connected" and row["callback_answered_at"] is not None
    await _leg_status(client, second, "completed", CallDuration="40")
    assert (await _call(pool, sid))["state"] == "completed"
    await panel.close()


async def test_a_voicemail_that_picks_up_is_a_ring_nobody_answered(
    app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    """Machine detection says a machine answered: no agent is bridged to a recording.
    The agent is freed, the call waits again in its place, and the next ring that a
    person picks up is bridged."""
    r = await _rung(app_factory, aiohttp_server, 330, max_wait_seconds=600)
    client, fake, panel, sid, caller = r.client, r.fake, r.panel, r.sid, r.caller
    call_id, create = r.call_id, r.create
    key = (await _call(pool, sid))["service_key"]
    status, text = await post_twilio(
        client,
        _path(create["Url"]),
        _leg_form(create["Sid"], caller, CallStatus="in-progress", AnsweredBy="machine_start"),
    )
    assert status == 200 and _verbs(text) == ["Hangup"], text
    await panel.state("available")
    row = await _call(pool, sid)
    # Set aside for the queue's retry delay, with its key.
    assert row["state"] == "waiting" and row["callback_answered_at"] is None
    assert row["service_key"] == key
    attempt = await pool.fetchrow("SELECT result, cause FROM callback_attempts")
    assert tuple(attempt) == ("no_answer", "answered by a machine (machine_start)")
    # Twilio reports the leg's end after our hang-up: a ring that is over already.
    await _leg_status(client, create, "completed", CallDuration="3")
    assert (await _call(pool, sid))["state"] == "waiting"
    assert await pool.fetchval("SELECT count(*) FROM callback_attempts") == 1
    # A fax is no person either; "unknown" is bridged (better silence than a hang-up).
    assert await accept_next_offer(panel) == call_id
    assert (await _call(pool, sid))["service_key"] == key
    second = await _created(fake, 2)
    status, text = await post_twilio(
        client,
        _path(second["Url"]),
        _leg_form(second["Sid"], caller, CallStatus="in-progress", AnsweredBy="unknown"),
    )
    assert status == 200 and "Dial" in _verbs(text), text
    assert (await _call(pool, sid))["callback_answered_at"] is not None
    await panel.close()


async def test_without_machine_detection_twilio_is_not_asked(
    app_factory: AppFactory, aiohttp_server: ServerFactory
) -> None:
    fake = FakeTwilioAPI()
    api = await aiohttp_server(fake.app(), host="127.0.0.1")
    client = await _app(app_factory, api, twilio_callback_machine_detection=False)
    await _queue(client)
    _, ada = await make_agent_with_endpoint(client, "ada", "client:ada")
    sid, caller = call_sid(331), "+12125550133"
    await post_twilio(client, "/telephony/twilio/voice", voice_params(sid, caller))
    await _opt_in(client, sid, caller)
    panel = await available_panel(client, ada)
    await accept_next_offer(panel)
    create = await _created(fake, 1)
    assert "MachineDetection" not in create and create["To"] == caller
    await panel.close()


# -- bad input -------------------------------------------------------------------


async def test_opt_ins_that_cannot_be_taken_are_answered_and_store_nothing(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await _app(app_factory)
    await _queue(client)

    # From a call that ended (the caller hung up in the queue): hung up, nothing stored.
    gone, gone_caller = call_sid(400), "+12125550140"
    await post_twilio(client, "/telephony/twilio/voice", voice_params(gone, gone_caller))
    offer = await _offer_path(client, gone, gone_caller)
    await post_twilio(
        client,
        "/telephony/twilio/status",
        _form(gone, gone_caller, CallStatus="completed", QueueResult="hangup"),
    )
    for path in (offer, "/telephony/twilio/callback?step=confirm&try=1"):
        status, text = await post_twilio(
            client, path, _form(gone, gone_caller, CallStatus="in-progress", Digits="1")
        )
        assert status == 200 and "Hangup" in _verbs(text), text
    row = await _call(pool, gone)
    assert row["state"] == "abandoned" and row["callback_number"] is None

    # A premium-rate calling number: refused, and the caller is asked to type one; a
    # typed premium-rate or invalid number is refused too; after the last try they
    # wait on, their place kept, nothing stored.
    sid, caller = call_sid(401), "+19005550100"
    await post_twilio(client, "/telephony/twilio/voice", voice_params(sid, caller))
    offer = await _offer_path(client, sid, caller)
    status, text = await post_twilio(
        client, offer, _form(sid, caller, CallStatus="in-progress", Digits="1")
    )
    confirm = _xml(text).find("Gather")
    assert confirm is not None
    assert "1 9 0 0 5 5 5 0 1 0 0" in (confirm.findtext("Say") or "")
    path = _path(confirm.get("action"))
    assert path == "/telephony/twilio/callback?step=confirm&try=1"
    said = []
    for digits in ["1", "19005550123", "12"]:
        status, text = await post_twilio(
            client, path, _form(sid, caller, CallStatus="in-progress", Digits=digits)
        )
        assert status == 200, text
        said.append(_xml(text).findtext("Say") or "")
        again = _xml(text).find("Gather")
        if again is not None:
            assert "enter the number" in (again.findtext("Say") or "")
            path = _path(again.get("action"))
    assert said[0] == "Sorry, we cannot call your number back."
    assert said[1] == said[2] == "Sorry, we cannot call that number."
    assert path == "/telephony/twilio/callback?step=confirm&try=3&typed=1"
    assert _verbs(text) == ["Say", "Say", "Redirect"], text
    row = await _call(pool, sid)
    assert row["state"] == "waiting" and row["callback_number"] is None

    # A number that can be rung, then the same opt-in again (Twilio repeating it, or
    # the caller pressing on): the first stands, the repeat names it.
    text = await _opt_in(client, sid, caller, digits="2125550188")
    assert _verbs(text) == ["Say", "Hangup"], text
    first = await _call(pool, sid)
    assert first["callback_number"] == "+12125550188"
    status, again_text = await post_twilio(
        client,
        "/telephony/twilio/callback?step=confirm&try=1&typed=1",
        _form(sid, caller, CallStatus="in-progress", Digits="2125550199"),
    )
    assert status == 200 and again_text == text
    repeat = await _call(pool, sid)
    assert repeat["callback_number"] == "+12125550188"
    assert repeat["callback_requested_at"] == first["callback_requested_at"]
    # A wait request for it (late) says the same and hangs up.
    status, text = await post_twilio(
        client, "/telephony/twilio/wait", _form(sid, caller, CallStatus="in-progress")
    )
    assert _verbs(text) == ["Say", "Hangup"], text

    # Not from Twilio (no signature, or signed for another URL): refused.
    for path in (
        "/telephony/twilio/callback?step=offer",
        f"/telephony/twilio/callback/answer?call={sid}&bridge=1",
        f"/telephony/twilio/callback/status?call={sid}&bridge=1",
        f"/telephony/twilio/callback/dial?call={sid}&bridge=1",
    ):
        params = _leg_form(call_sid(499), "+12125550188", CallStatus="no-answer", Digits="1")
        status, _ = await post_twilio(client, path, params, signature="")
        assert status == 403, path
        status, _ = await post_twilio(client, path, params, public_url="https://evil.example")
        assert status == 403, path
    # A signed URL of ours with its query cut: refused, not a 500.
    status, text = await post_twilio(
        client, "/telephony/twilio/callback/status?call=" + sid, _leg_form(call_sid(499), caller)
    )
    assert status == 422 and "bridge" in text
    assert await pool.fetchval("SELECT count(*) FROM callback_attempts") == 0


async def test_a_callback_answered_after_a_supervisor_ended_the_call_lets_the_caller_go(
    app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    r = await _rung(app_factory, aiohttp_server, 410)
    client, panel, sid, caller = r.client, r.panel, r.sid, r.caller
    call_id, create = r.call_id, r.create
    resp = await client.post(
        f"/api/calls/{call_id}/end", json={"outcome": "completed", "reason": "supervisor"}
    )
    assert resp.status == 200, await resp.text()
    # The caller picks up the ring of a call that is over: told so and let go, no <Dial>.
    status, text = await post_twilio(
        client, _path(create["Url"]), _leg_form(create["Sid"], caller, CallStatus="in-progress")
    )
    assert status == 200 and _verbs(text) == ["Say", "Hangup"], text
    await _leg_status(client, create, "completed", CallDuration="3")
    row = await _call(pool, sid)
    assert (row["state"], row["end_reason"]) == ("completed", "supervisor")
    await panel.close()


async def test_a_supervisor_ending_a_bridged_callback_hangs_up_its_outbound_leg(
    app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    """The caller is on the leg we created, not on their first call (long gone): the
    releaser's hang-up goes to that leg."""
    r = await _rung(app_factory, aiohttp_server, 420)
    client, fake, panel, sid, call_id = r.client, r.fake, r.panel, r.sid, r.call_id
    create = await _created(fake, 1)
    await _ring_answered(client, create, "ada")
    resp = await client.post(
        f"/api/calls/{call_id}/end", json={"outcome": "completed", "reason": "supervisor"}
    )
    assert resp.status == 200, await resp.text()
    await eventually(lambda: _true(bool(fake.updates)))
    assert fake.updates == [(create["Sid"], {"Status": "completed"})]
    # Twilio then reports the leg's end: the call stays as the supervisor ended it.
    await _leg_status(client, create, "completed", CallDuration="40")
    row = await _call(pool, sid)
    assert (row["state"], row["end_reason"]) == ("completed", "supervisor")
    await panel.close()


async def test_a_ring_twilio_never_reports_on_frees_the_agent_after_the_watchdog(
    app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    # The call was created at Twilio, but no status callback ever comes: after twice
    # the ring's limit the bridger's catch-up counts the ring as not answered.
    r = await _rung(app_factory, aiohttp_server, 700, "sip:ada@pbx.example")
    client, panel, sid, call_id, agent_id = r.client, r.panel, r.sid, r.call_id, r.agent_id
    bridger = client.app[app_keys.BRIDGER]
    await bridger.catch_up()  # the ring is young: nothing changes
    state = await pool.fetchval("SELECT state FROM agents WHERE id = $1", agent_id)
    assert state == "on_call"
    await pool.execute(
        "UPDATE callback_attempts SET started_at = started_at - interval '1 hour'"
        " WHERE call_id = $1",
        call_id,
    )
    await bridger.catch_up()
    await panel.state("available")
    ring = await pool.fetchrow(
        "SELECT result, cause FROM callback_attempts WHERE call_id = $1", call_id
    )
    assert dict(ring) == {"result": "failed", "cause": "no report of the ring"}
    assert (await _call(pool, sid))["state"] == "waiting"
    await panel.close()
