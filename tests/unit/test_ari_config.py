"""The ARI adapter's settings and the small pure helpers it routes events by."""

from __future__ import annotations

import base64

import pytest
from pydantic import SecretStr, ValidationError

from callcenter.config import Settings
from callcenter.telephony_adapters.ari import AriConfig, agent_args, bridge_of, queue_from_args
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
