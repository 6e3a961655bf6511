"""TwiML we send Twilio: built with the library's builders, values escaped, endpoints mapped."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from callcenter.config import Settings
from callcenter.errors import PeerFailed
from callcenter.queue.models import Call, CallbackState, CallState
from callcenter.telephony_adapters.twilio import (
    _Urls,
    callback_taken_twiml,
    confirm_twiml,
    dial_twiml,
    spoken_number,
    wait_twiml,
)


@pytest.mark.parametrize(
    ("endpoint", "noun", "text"),
    [
        ("client:ada", "Client", "ada"),
        ("sip:ada@pbx.example;transport=tls", "Sip", "sip:ada@pbx.example;transport=tls"),
        ("+15551230000", "Number", "+15551230000"),
    ],
)
def test_dial_maps_each_endpoint_to_its_noun(endpoint: str, noun: str, text: str) -> None:
    root = ET.fromstring(dial_twiml(endpoint, action="https://cc.example.com/d?a=1&b=2"))
    dial = root.find("Dial")
    assert dial is not None and dial.findtext(noun) == text
    assert dial.get("action") == "https://cc.example.com/d?a=1&b=2"  # & escaped and read back


def test_dial_escapes_and_refuses_what_twilio_cannot_dial() -> None:
    xml = dial_twiml("sip:a&b<c>@pbx.example")
    assert "&amp;" in xml and "&lt;" in xml
    assert ET.fromstring(xml).findtext("Dial/Sip") == "sip:a&b<c>@pbx.example"
    with pytest.raises(PeerFailed, match="PJSIP/1001"):
        dial_twiml("PJSIP/1001")


def _call(state: CallState, position: int | None, ewt: float | None) -> Call:
    now = datetime.now(UTC)
    return Call(
        id=1, call_id="twilio:CA1", queue="general", state=state, ani=None, customer=None,
        identified_by=None, tier=None, credit_seconds=0, credit_explicit=False, service_key=now,
        enqueued_at=now, connected_at=None, ended_at=None, end_reason=None, agent_id=None,
        offered_to=None, position=position, estimated_wait_seconds=ewt, ewt_at_enqueue=None,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("ewt", "words"),
    [
        (None, "You are number 3 in line."),
        (20.0, "less than a minute"),
        (61.0, "about 2 minutes"),
        (60.0, "about 1 minute."),
    ],
)
def test_wait_says_position_and_estimate_then_plays_music(ewt: float | None, words: str) -> None:
    settings = Settings(twilio_hold_music_url="https://music.example/hold.mp3")
    root = ET.fromstring(str(wait_twiml(_call(CallState.waiting, 3, ewt), settings)))
    assert words in (root.findtext("Say") or "")
    assert root.findtext("Play") == "https://music.example/hold.mp3"


def test_wait_hangs_up_an_ended_call_and_only_plays_for_others() -> None:
    settings = Settings()
    ended = ET.fromstring(str(wait_twiml(_call(CallState.transferred, None, None), settings)))
    assert ended.find("Hangup") is not None
    connecting = ET.fromstring(str(wait_twiml(_call(CallState.connected, None, None), settings)))
    assert connecting.find("Say") is None and connecting.find("Play") is not None
    unknown = ET.fromstring(str(wait_twiml(None, settings)))
    assert unknown.find("Play") is not None


def test_twilio_connects_need_the_public_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without it the connect's <Dial> has no action URL (TwiML sent by REST must use
    absolute URLs), and Twilio hangs up a caller whose agent does not answer instead of
    telling us: refuse to start rather than lose those callers."""
    monkeypatch.setenv("CALLCENTER_TWILIO_ACCOUNT_SID", "AC" + "0" * 32)
    monkeypatch.setenv("CALLCENTER_TWILIO_AUTH_TOKEN", "token")
    monkeypatch.delenv("CALLCENTER_PUBLIC_URL", raising=False)
    with pytest.raises(ValidationError, match="CALLCENTER_PUBLIC_URL"):
        Settings()
    monkeypatch.setenv("CALLCENTER_PUBLIC_URL", "https://cc.example.com/")
    assert Settings().public_url == "https://cc.example.com/"
    # Verifying webhooks alone (no REST connects) needs no public URL.
    monkeypatch.delenv("CALLCENTER_TWILIO_ACCOUNT_SID")
    monkeypatch.delenv("CALLCENTER_PUBLIC_URL")
    assert Settings().public_url is None


def test_the_offer_wraps_the_music_so_the_loop_plays_on_without_a_key() -> None:
    settings = Settings(twilio_hold_music_url="https://music.example/hold.mp3")
    offer = "https://cc.example.com/telephony/twilio/callback?step=offer"
    root = ET.fromstring(str(wait_twiml(_call(CallState.waiting, 2, 90.0), settings, offer=offer)))
    assert [c.tag for c in root] == ["Say", "Gather"]
    gather = root.find("Gather")
    assert gather is not None and gather.get("action") == offer
    assert gather.get("numDigits") == "1"
    assert [c.tag for c in gather] == ["Say", "Play"]
    # Not offered to a call that is not waiting (connecting: music only).
    connecting = wait_twiml(_call(CallState.connected, None, None), settings, offer=offer)
    assert ET.fromstring(str(connecting)).find("Gather") is None


def test_a_virtual_call_is_told_it_will_be_called_back_and_hung_up() -> None:
    call = _call(CallState.waiting, 1, None)
    now = call.enqueued_at
    call.callback = CallbackState(
        number="+12125550102", requested_at=now, attempts=0, retry_at=None, answered_at=None
    )
    root = ET.fromstring(str(wait_twiml(call, Settings())))
    assert [c.tag for c in root] == ["Say", "Hangup"]
    assert "1 2 1 2 5 5 5 0 1 0 2" in (root.findtext("Say") or "")
    assert str(wait_twiml(call, Settings())) == str(
        callback_taken_twiml("+12125550102", Settings())
    )


def test_the_number_is_read_digit_by_digit() -> None:
    assert spoken_number("+44 20 7946-0018") == "4 4 2 0 7 9 4 6 0 0 1 8"


def test_a_withheld_number_is_asked_for_and_the_tries_are_bounded() -> None:
    urls = _Urls("https://cc.example.com")
    withheld = _call(CallState.waiting, 1, None)
    root = ET.fromstring(str(confirm_twiml(withheld, urls, Settings(), tried=1, typed=False)))
    gather = root.find("Gather")
    assert gather is not None and gather.get("finishOnKey") == "#"
    assert gather.get("action") == (
        "https://cc.example.com/telephony/twilio/callback?step=confirm&try=1&typed=1"
    )
    assert "enter the number" in (gather.findtext("Say") or "")
    last = confirm_twiml(withheld, urls, Settings(), tried=4, typed=True, refused="Sorry.")
    assert [c.tag for c in ET.fromstring(str(last))] == ["Say", "Say", "Redirect"]
