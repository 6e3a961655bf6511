"""ARI events as Asterisk builds them, parsed into typed objects; garbage is refused clearly."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from callcenter.errors import MalformedEvent
from callcenter.telephony_adapters.ari_events import (
    ChannelDestroyed,
    ChannelDtmfReceived,
    ChannelHangupRequest,
    Ignored,
    PlaybackFinished,
    StasisEnd,
    StasisStart,
    parse_channels,
    parse_event,
)

CHANNEL: dict[str, Any] = {
    "id": "1754402591.17",
    "name": "PJSIP/trunk-00000008",
    "state": "Ring",
    "protocol_id": "5f1c0a7e-3b7e-4b7a-9c1e-2f0d@198.51.100.7",
    "caller": {"name": "Jane Doe", "number": "+12125550123"},
    "connected": {"name": "", "number": ""},
    "accountcode": "",
    "dialplan": {
        "context": "from-trunk",
        "exten": "+14155550100",
        "priority": 2,
        "app_name": "Stasis",
        "app_data": "callcenter,sales",
    },
    "creationtime": "2026-08-05T14:03:11.301+0000",
    "language": "en",
}


def envelope(kind: str, **fields: Any) -> str:
    return json.dumps(
        {
            "type": kind,
            "timestamp": "2026-08-05T14:03:11.412-0500",
            **fields,
            "asterisk_id": "52:54:00:12:34:56",
            "application": "callcenter",
        }
    )


def test_stasis_start() -> None:
    event = parse_event(envelope("StasisStart", args=["sales"], channel=CHANNEL))
    assert isinstance(event, StasisStart)
    assert event.args == ["sales"]
    assert event.channel.id == "1754402591.17"
    assert event.channel.caller.number == "+12125550123"
    assert event.channel.dialplan.exten == "+14155550100"
    assert event.application == "callcenter"
    assert event.timestamp is not None
    assert event.timestamp.utcoffset() == timedelta(hours=-5)
    assert event.timestamp.microsecond == 412_000


def test_channel_in_app() -> None:
    event = parse_event(envelope("StasisStart", args=[], channel=CHANNEL))
    assert isinstance(event, StasisStart)
    assert event.channel.in_app("callcenter")
    assert not event.channel.in_app("sales")
    other = {**CHANNEL, "dialplan": {**CHANNEL["dialplan"], "app_name": "Dial"}}
    assert not parse_channels([other])[0].in_app("callcenter")


def test_dtmf_hangup_end_destroyed() -> None:
    dtmf = parse_event(envelope("ChannelDtmfReceived", digit="#", duration_ms=120, channel=CHANNEL))
    assert isinstance(dtmf, ChannelDtmfReceived) and dtmf.digit == "#"
    req = parse_event(envelope("ChannelHangupRequest", cause=16, channel=CHANNEL))
    assert isinstance(req, ChannelHangupRequest) and req.cause == 16 and req.soft is None
    end = parse_event(envelope("StasisEnd", channel=CHANNEL))
    assert isinstance(end, StasisEnd)
    gone = parse_event(
        envelope("ChannelDestroyed", cause=16, cause_txt="Normal Clearing", channel=CHANNEL)
    )
    assert isinstance(gone, ChannelDestroyed) and gone.cause_txt == "Normal Clearing"


def test_null_dialplan_fields_and_missing_optional_parts() -> None:
    bare = {"id": "1.2", "dialplan": {"context": None, "exten": None, "priority": None,
                                      "app_name": None, "app_data": None}}  # fmt: skip
    event = parse_event(envelope("StasisEnd", channel=bare))
    assert isinstance(event, StasisEnd) and not event.channel.in_app("callcenter")
    assert event.channel.caller.number == ""


def test_other_events_are_ignored() -> None:
    event = parse_event(envelope("ChannelVarset", variable="X", value="1", channel=CHANNEL))
    assert event == Ignored(type="ChannelVarset")


@pytest.mark.parametrize(
    ("frame", "says"),
    [
        ("{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"channel": {}}', "no type"),
        (envelope("StasisStart", args=[]), "channel"),
        (envelope("StasisStart", channel={"name": "x"}), "channel.id"),
        (envelope("ChannelDtmfReceived", digit="12", channel=CHANNEL), "digit"),
    ],
)
def test_garbage_is_refused_with_a_reason(frame: str | bytes, says: str) -> None:
    with pytest.raises(MalformedEvent) as caught:
        parse_event(frame)
    assert says in caught.value.detail


def test_channel_list_must_be_channels() -> None:
    assert [c.id for c in parse_channels([CHANNEL])] == ["1754402591.17"]
    with pytest.raises(MalformedEvent):
        parse_channels({"message": "nope"})


def test_playback_finished_names_its_channel() -> None:
    # As Asterisk sent it for a prompt on a caller (tests/peers: the real server).
    playback = {
        "id": "cc-prompt-3f2a9c1e",
        "media_uri": "sound:custom/press-1",
        "target_uri": "channel:caller-1",
        "language": "en",
        "state": "done",
    }
    event = parse_event(envelope("PlaybackFinished", playback=playback))
    assert isinstance(event, PlaybackFinished)
    assert event.playback.id == "cc-prompt-3f2a9c1e" and event.playback.state == "done"
    assert event.playback.channel_id == "caller-1"
    on_bridge = {**playback, "target_uri": "bridge:b"}
    bridge = parse_event(envelope("PlaybackFinished", playback=on_bridge))
    assert isinstance(bridge, PlaybackFinished) and bridge.playback.channel_id is None
    with pytest.raises(MalformedEvent):
        parse_event(envelope("PlaybackFinished", playback={"state": "done"}))
