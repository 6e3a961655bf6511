"""Asterisk ARI events as plain typed objects.

Asterisk sends one JSON object per websocket text frame; the envelope is
``type``, ``timestamp``, ``application`` and ``asterisk_id`` (see
``rest-api/api-docs/events.json``). Only the events the adapter acts on are
modelled; every other type parses to ``Ignored``, so a newer Asterisk that
adds events does not upset us. Anything that is not a JSON object with a
``type``, or a known event whose fields do not fit, raises ``MalformedEvent``:
the adapter logs it and reconciles, it never stops reading.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError

from callcenter.errors import MalformedEvent
from callcenter.http.problems import first_error

#: Asterisk's ``AST_ISO8601_FORMAT`` (``%FT%T.%q%z``): milliseconds and an offset without a colon.
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%f%z"


def parse_timestamp(value: Any) -> Any:
    """``2014-05-20T13:15:27.131-0500`` as an aware datetime; other shapes go to pydantic."""
    if isinstance(value, str):
        try:
            return datetime.strptime(value, TIMESTAMP_FORMAT)
        except ValueError:
            pass
    return value


Timestamp = Annotated[datetime, BeforeValidator(parse_timestamp)]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class CallerId(_Wire):
    name: str = ""
    number: str = ""


class Dialplan(_Wire):
    context: str | None = None
    exten: str | None = None
    priority: int | None = None
    app_name: str | None = None
    app_data: str | None = None


class Channel(_Wire):
    """The ``Channel`` model (``channels.json``): the fields the adapter reads."""

    id: str = Field(min_length=1)
    name: str = ""
    state: str = ""
    caller: CallerId = CallerId()
    dialplan: Dialplan = Dialplan()

    def in_app(self, app: str) -> bool:
        """Whether the channel sits in our Stasis application right now.

        ``GET /ari/channels`` lists every channel of the Asterisk; ours are
        those whose current dialplan application is ``Stasis`` with our
        application name as its first argument.
        """
        if (self.dialplan.app_name or "").lower() != "stasis":
            return False
        return (self.dialplan.app_data or "").split(",", 1)[0].strip() == app


class _Event(_Wire):
    timestamp: Timestamp | None = None
    application: str | None = None
    asterisk_id: str | None = None


class StasisStart(_Event):
    """A channel entered our application: ``Stasis(app,args…)`` or an originate with ``app``."""

    type: Literal["StasisStart"]
    args: list[str] = Field(default_factory=list)
    channel: Channel


class StasisEnd(_Event):
    type: Literal["StasisEnd"]
    channel: Channel


class ChannelDtmfReceived(_Event):
    """One key, sent when the key is released."""

    type: Literal["ChannelDtmfReceived"]
    digit: str = Field(min_length=1, max_length=1)
    duration_ms: int | None = None
    channel: Channel


class ChannelHangupRequest(_Event):
    type: Literal["ChannelHangupRequest"]
    cause: int | None = None
    soft: bool | None = None
    channel: Channel


class ChannelDestroyed(_Event):
    type: Literal["ChannelDestroyed"]
    cause: int | None = None
    cause_txt: str | None = None
    channel: Channel


class Playback(_Wire):
    """The ``Playback`` model (``playbacks.json``): ``target_uri`` is ``channel:<id>``."""

    id: str = Field(min_length=1)
    target_uri: str = ""
    state: str = ""

    @property
    def channel_id(self) -> str | None:
        kind, _, target = self.target_uri.partition(":")
        return target if kind == "channel" and target else None


class PlaybackFinished(_Event):
    """A prompt we played is over (``state``: ``done``, ``failed`` or ``cancelled``)."""

    type: Literal["PlaybackFinished"]
    playback: Playback


class Ignored(_Wire):
    """An event the adapter has no use for (``ChannelVarset``, ``ChannelStateChange`` …)."""

    type: str


ChannelEvent = (
    StasisStart | StasisEnd | ChannelDtmfReceived | ChannelHangupRequest | ChannelDestroyed
)
AriEvent = ChannelEvent | PlaybackFinished

_KNOWN = TypeAdapter[AriEvent](Annotated[AriEvent, Field(discriminator="type")])
_TYPES = frozenset(
    {
        "StasisStart",
        "StasisEnd",
        "ChannelDtmfReceived",
        "ChannelHangupRequest",
        "ChannelDestroyed",
        "PlaybackFinished",
    }
)

#: The events after which the channel is gone (or going) for good.
GONE = (StasisEnd, ChannelHangupRequest, ChannelDestroyed)


def parse_event(text: str | bytes) -> AriEvent | Ignored:
    """One websocket frame as an event; ``MalformedEvent`` says what is wrong with it."""
    try:
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedEvent(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise MalformedEvent(f"not a JSON object but {type(data).__name__}")
    kind = data.get("type")
    if not isinstance(kind, str) or not kind:
        raise MalformedEvent("the event has no type", field="type")
    if kind not in _TYPES:
        return Ignored(type=kind)
    try:
        return _KNOWN.validate_python(data)
    except ValidationError as exc:
        field, detail = first_error(exc, skip=1)  # loc[0] is the union tag
        raise MalformedEvent(f"{kind}: {detail}", field=field) from exc


def parse_channels(data: Any) -> list[Channel]:
    """The answer of ``GET /ari/channels`` (a JSON list of ``Channel``)."""
    try:
        return TypeAdapter(list[Channel]).validate_python(data)
    except ValidationError as exc:
        raise MalformedEvent(f"GET /ari/channels: {exc.errors()[0]['msg']}") from exc
