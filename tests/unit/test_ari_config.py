"""The ARI adapter's settings and the small pure helpers it routes events by."""

from __future__ import annotations

import base64

import pytest
from pydantic import SecretStr, ValidationError

from callcenter.config import Settings
from callcenter.telephony_adapters.ari import (
    AriConfig,
    agent_args,
    bridge_of,
    callback_args,
    dial_string,
    queue_from_args,
    ring_result,
)
from callcenter.telephony_adapters.ari_events import Channel


def test_no_url_no_adapter() -> None:
    assert AriConfig.from_settings(Settings()) is None


def test_urls_and_credentials() -> None:
    settings = Settings(
        ari_url="https://pbx.example:8089/asterisk/",
        ari_user="cc",
        ari_password=SecretStr("s3cret"),
        ari_app="contact-center",
        connect_timeout_seconds=12.5,
    )
    config = AriConfig.from_settings(settings)
    assert config is not None
    assert config.url == "https://pbx.example:8089/asterisk"
    assert config.events_url == "wss://pbx.example:8089/asterisk/ari/events?app=contact-center"
    scheme, _, token = config.headers["Authorization"].partition(" ")
    assert scheme == "Basic" and base64.b64decode(token) == b"cc:s3cret"
    # The ring is its own setting, not the time limit of one REST command.
    assert config.ring_seconds == 15 and config.command_seconds == 12.5
    assert "s3cret" not in repr(settings)
    rung = AriConfig.from_settings(Settings(ari_url="http://127.0.0.1:8088", ari_ring_seconds=20))
    assert rung is not None and rung.ring_seconds == 20
    plain = AriConfig.from_settings(Settings(ari_url="http://127.0.0.1:8088"))
    assert plain is not None and plain.headers == {}
    assert plain.events_url == "ws://127.0.0.1:8088/ari/events?app=callcenter"


@pytest.mark.parametrize(
    "url",
    ["ftp://pbx:8088", "pbx:8088", "http://", "http://u:p@pbx:8088", "http://pbx:8088/?x=1"],
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ValidationError):
        Settings(ari_url=url)


def test_bad_app_name_is_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(ari_app="call center")


def test_queue_from_stasis_args() -> None:
    assert queue_from_args(["sales"]) == "sales"
    assert queue_from_args(["sales", "more"]) == "sales"
    assert queue_from_args([]) is None
    assert queue_from_args(["Not A Queue"]) is None


def _channel(channel_id: str, app_data: str) -> Channel:
    return Channel.model_validate(
        {"id": channel_id, "dialplan": {"app_name": "Stasis", "app_data": app_data}}
    )


def test_agent_legs_are_told_apart_from_callers() -> None:
    leg = _channel("cc-agent-42-0123abcd", "callcenter,agent,42,1754402591.17")
    assert agent_args(leg) == (42, "1754402591.17")
    assert bridge_of(leg.id) == "cc-bridge-42-0123abcd"
    # A caller whose Stasis() argument happens to be "agent" is still a caller.
    assert agent_args(_channel("1754402591.17", "callcenter,agent,42,x")) is None
    assert agent_args(_channel("cc-agent-42-0123abcd", "callcenter")) is None


def test_callback_settings_and_dial_string() -> None:
    off = AriConfig.from_settings(Settings(ari_url="http://127.0.0.1:8088"))
    assert off is not None and off.callback_endpoint is None
    settings = Settings(
        ari_url="http://127.0.0.1:8088",
        ari_callback_endpoint="PJSIP/{digits}@trunk",
        ari_callback_prompt="sound:custom/press-1",
        ari_callback_confirm_prompt=" ",
        ari_callback_confirm_seconds=3,
    )
    config = AriConfig.from_settings(settings)
    assert config is not None
    assert config.callback_endpoint == "PJSIP/{digits}@trunk"
    assert config.callback_prompt == "sound:custom/press-1"
    assert config.callback_confirm_prompt is None and config.callback_confirm_seconds == 3
    assert dial_string("PJSIP/{digits}@trunk", "+12125550123") == "PJSIP/12125550123@trunk"
    assert dial_string("PJSIP/trunk/sip:{number}@sbc", "+4930123") == "PJSIP/trunk/sip:+4930123@sbc"
    for bad in ("PJSIP/{phone}@trunk", "no-tech", "PJSIP/{0}"):
        with pytest.raises(ValidationError, match="ari_callback_endpoint"):
            Settings(ari_callback_endpoint=bad)
    with pytest.raises(ValidationError, match="ari_callback_prompt"):
        Settings(ari_callback_prompt="custom/press-1")


def test_callback_legs_and_ring_causes() -> None:
    leg = Channel.model_validate(
        {
            "id": "cc-callback-42-0a1b2c3d",
            "dialplan": {"app_name": "Stasis", "app_data": "callcenter,callback,42,1754.17"},
        }
    )
    assert callback_args(leg) == (42, "1754.17")
    assert agent_args(leg) is None
    half = leg.model_copy(update={"id": "cc-callback-42-0a1b2c3d;2"})
    assert callback_args(half) is None
    # Busy (17), rang out (19), Local's busy (0): not answered; no route, congestion: failed.
    assert [ring_result(c) for c in (17, 19, 0, None)] == ["no_answer"] * 4
    assert [ring_result(c) for c in (1, 3, 34, 38)] == ["failed"] * 4
