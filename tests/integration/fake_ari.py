"""A fake Asterisk ARI on 127.0.0.1 that speaks ARI's real wire format.

The event websocket (``/ari/events``) checks HTTP Basic auth (or ``api_key``)
and the ``app`` parameter as Asterisk does, and sends events built like
``res/res_stasis.c`` and ``main/stasis_channels.c`` build them: the envelope
(``type``, ``timestamp`` in ``%FT%T.%q%z``, ``asterisk_id``,
``application``) and a full ``Channel`` object. The REST side keeps channels
and bridges, answers like ARI (204 for void operations, ``{"message": …}``
with 4xx) and records every request, so a test can assert what the service
asked Asterisk to do. An originated channel "answers" at once and enters the
application with its ``appArgs``, unless ``answer_originates`` says otherwise.
As the real Asterisk (``tests/peers/test_asterisk.py``) does: a phone that does
not answer rings until the originate's ``timeout`` and is then destroyed
(cause 19), a busy one is destroyed at once, and a newer event websocket for
the application takes it over: the older gets ``ApplicationReplaced`` and no
more events, and stays open. A channel in the application that hangs up is
reported ``ChannelHangupRequest`` and ``StasisEnd`` and nothing more (the
application is no longer subscribed to it); one outside it that we
originated (ringing) ``ChannelHangupRequest`` and ``ChannelDestroyed``. A
hang-up we asked for (``DELETE``) is a soft one, cause 32. A prompt
(``POST …/play``) plays for ``prompt_seconds`` and ends ``PlaybackFinished``:
``done``, or ``failed`` when its channel hangs up first.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

ASTERISK_ID = "52:54:00:12:34:56"


def timestamp() -> str:
    """Asterisk's ``%FT%T.%q%z``: milliseconds, offset without a colon."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}" + "+0000"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    body: Any = None


@dataclass
class FakeAri:
    user: str = "asterisk"
    password: str = "secret"
    app_name: str = "callcenter"
    #: What an originated channel does: True answers at once, False is busy (fails at
    #: once), None rings until the originate's ``timeout`` (or a hang-up), unanswered.
    answer_originates: bool | None = True
    #: The same per endpoint (dial string), before ``answer_originates``; "held": it
    #: rings until the test calls ``pick_up`` (or the originate's ``timeout``).
    answers: dict[str, bool | str | None] = field(default_factory=dict)
    #: How long a prompt plays.
    prompt_seconds: float = 0.05
    playbacks: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Channels whose hang-up (``DELETE``) fails with 500, as a fault would.
    refuse_hangups: set[str] = field(default_factory=set)
    #: Endpoints whose originate Asterisk refuses (500 "Allocation failed", an unknown
    #: channel technology).
    refuse_endpoints: set[str] = field(default_factory=set)
    _held: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: Off: the event websocket answers 503, as an Asterisk that is restarting.
    accepting: bool = True
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    bridges: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    refused: list[tuple[str, int]] = field(default_factory=list)
    connections: int = 0
    _sockets: list[tuple[web.Request, web.WebSocketResponse]] = field(default_factory=list)
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    # -- the application -------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/ari/events", self._events)
        app.router.add_get("/ari/channels", self._list_channels)
        app.router.add_post("/ari/channels", self._originate)
        app.router.add_delete("/ari/channels/{id}", self._hangup)
        app.router.add_post("/ari/channels/{id}/answer", self._answer)
        app.router.add_post("/ari/channels/{id}/moh", self._moh)
        app.router.add_delete("/ari/channels/{id}/moh", self._moh)
        app.router.add_post("/ari/channels/{id}/play", self._play)
        app.router.add_delete("/ari/playbacks/{id}", self._stop_playback)
        app.router.add_post("/ari/bridges", self._create_bridge)
        app.router.add_post("/ari/bridges/{id}/addChannel", self._add_channel)
        app.router.add_delete("/ari/bridges/{id}", self._destroy_bridge)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not self._authenticated(request):
            self.refused.append((request.path, 401))
            return _error(401, "Authentication required")
        if request.path != "/ari/events":
            body = None
            if request.can_read_body:
                raw = await request.read()
                body = json.loads(raw) if raw else None
            self.requests.append(Recorded(request.method, request.path, dict(request.query), body))
            await self._notify()
        response: web.StreamResponse = await handler(request)
        return response

    def _authenticated(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                return False
        elif "api_key" in request.query:
            user, _, password = request.query["api_key"].partition(":")
        else:
            return False
        return bool(password) and (user, password) == (self.user, self.password)

    # -- the event websocket -----------------------------------------------------

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if not self.accepting:
            self.refused.append((request.path, 503))
            return _error(503, "Service Unavailable")
        apps = [a for a in request.query.get("app", "").split(",") if a]
        if not apps:
            self.refused.append((request.path, 400))
            return _error(400, "Missing required field app")
        if self.app_name not in apps:
            self.refused.append((request.path, 400))
            return _error(400, f"unexpected application {apps}")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        for _, older in self._sockets:
            # Asterisk's one websocket per application: the older is told, then ignored.
            await older.send_str(json.dumps(self.event("ApplicationReplaced")))
        self._sockets.append((request, ws))
        self.connections += 1
        await self._notify()
        try:
            async for msg in ws:
                if msg.type == WSMsgType.ERROR:
                    break
        finally:
            with contextlib.suppress(ValueError):
                self._sockets.remove((request, ws))
            await self._notify()
        return ws

    async def close(self) -> None:
        """Close every event websocket (the test is over; Asterisk stops)."""
        self.accepting = False
        for _, ws in list(self._sockets):
            await ws.close()

    @property
    def connected(self) -> bool:
        return bool(self._sockets)

    async def send(self, event: dict[str, Any]) -> None:
        await self.send_raw(json.dumps(event))

    async def send_raw(self, text: str | bytes) -> None:
        if not self._sockets:
            raise AssertionError("no ARI client is connected")
        _, ws = self._sockets[-1]  # only the application's newest websocket gets events
        if isinstance(text, bytes):
            await ws.send_bytes(text)
        else:
            await ws.send_str(text)

    async def drop(self) -> None:
        """Cut every event websocket without a closing handshake, as a network fault does."""
        for request, _ in list(self._sockets):
            if request.transport is not None:
                request.transport.abort()
        await self.until(lambda: not self._sockets)

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {
            "type": kind,
            "timestamp": timestamp(),
            **fields,
            "asterisk_id": ASTERISK_ID,
            "application": self.app_name,
        }

    # -- channels a test drives ------------------------------------------------------

    def new_channel(
        self,
        channel_id: str,
        number: str,
        *,
        name: str = "",
        state: str = "Ring",
        args: tuple[str, ...] = (),
        exten: str = "+14155550100",
    ) -> dict[str, Any]:
        seq = next(self._numbers)
        channel = {
            "id": channel_id,
            "name": name or f"PJSIP/trunk-{seq:08x}",
            "state": state,
            "protocol_id": f"{seq}-5f1c0a7e@198.51.100.7",
            "caller": {"name": "", "number": number},
            "connected": {"name": "", "number": ""},
            "accountcode": "",
            "dialplan": {
                "context": "from-trunk",
                "exten": exten,
                "priority": 2,
                "app_name": "Stasis",
                "app_data": ",".join((self.app_name, *args)),
            },
            "creationtime": timestamp(),
            "language": "en",
        }
        self.channels[channel_id] = channel
        return channel

    async def caller_arrives(
        self, channel_id: str, number: str, *, args: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        channel = self.new_channel(channel_id, number, args=args)
        await self.send(self.event("StasisStart", args=list(args), channel=channel))
        return channel

    async def press(self, channel_id: str, keys: str) -> None:
        for key in keys:
            await self.send(
                self.event(
                    "ChannelDtmfReceived",
                    digit=key,
                    duration_ms=120,
                    channel=self.channels[channel_id],
                )
            )

    async def hang_up(
        self,
        channel_id: str,
        cause: int = 16,
        *,
        hangup_request: bool = True,
        soft: bool = False,
        request_cause: int | None = None,
    ) -> None:
        """The far end hangs up (``soft``: we asked for it): the events Asterisk sends.

        A channel in the application is reported by its ``ChannelHangupRequest``
        and ``StasisEnd``; then it has left the application, which hears nothing
        more of it. An originated leg that is still ringing (never entered the
        application) is reported destroyed; when it rang out or was busy, only
        that (no ``ChannelHangupRequest``).
        """
        channel = self.channels.pop(channel_id)
        for bridge in self.bridges.values():
            if channel_id in bridge["channels"]:
                bridge["channels"].remove(channel_id)
        for playback_id, playback in list(self.playbacks.items()):
            if playback["target_uri"] == f"channel:{channel_id}":
                await self._playback_over(playback_id, "failed")
        in_app = channel["dialplan"]["app_name"] == "Stasis"
        if self._sockets:
            if hangup_request:
                fields: dict[str, Any] = {"cause": request_cause or cause}
                if soft:
                    fields["soft"] = True
                await self.send(self.event("ChannelHangupRequest", **fields, channel=channel))
            if in_app:
                await self.send(self.event("StasisEnd", channel=channel))
            else:
                await self.send(
                    self.event(
                        "ChannelDestroyed", cause=cause, cause_txt=_CAUSES[cause], channel=channel
                    )
                )
        await self._notify()

    def vanish(self, channel_id: str) -> None:
        """The channel is gone and nobody was told (it hung up while no client listened)."""
        self.channels.pop(channel_id)

    # -- REST --------------------------------------------------------------------

    async def _list_channels(self, request: web.Request) -> web.Response:
        return web.json_response(list(self.channels.values()))

    def _channel(self, request: web.Request) -> dict[str, Any] | None:
        return self.channels.get(request.match_info["id"])

    async def _answer(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        if channel is None:
            return _error(404, "Channel not found")
        channel["state"] = "Up"
        return web.Response(status=204)

    async def _moh(self, request: web.Request) -> web.Response:
        if self._channel(request) is None:
            return _error(404, "Channel not found")
        return web.Response(status=204)

    async def _hangup(self, request: web.Request) -> web.Response:
        if self._channel(request) is None:
            return _error(404, "Channel not found")
        if request.match_info["id"] in self.refuse_hangups:
            return _error(500, "Internal Server Error")
        cause = 16 if request.query.get("reason", "normal") == "normal" else 21
        hang_up = self.hang_up(request.match_info["id"], cause, soft=True, request_cause=32)
        asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(hang_up))
        return web.Response(status=204)

    async def _play(self, request: web.Request) -> web.Response:
        channel_id = request.match_info["id"]
        if self._channel(request) is None:
            return _error(404, "Channel not found")
        if "media" not in request.query:
            return _error(400, "Missing required field media")
        playback_id = request.query.get("playbackId") or f"pb-{len(self.playbacks) + 1}"
        playback = {
            "id": playback_id,
            "media_uri": request.query["media"],
            "target_uri": f"channel:{channel_id}",
            "language": "en",
            "state": "queued",
        }
        self.playbacks[playback_id] = playback

        async def play() -> None:
            playback["state"] = "playing"
            await self.send(self.event("PlaybackStarted", playback=dict(playback)))
            await asyncio.sleep(self.prompt_seconds)
            await self._playback_over(playback_id, "done")

        asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(play()))
        return web.json_response(dict(playback), status=201)

    async def _stop_playback(self, request: web.Request) -> web.Response:
        playback_id = request.match_info["id"]
        if playback_id not in self.playbacks:
            return _error(404, "Playback not found")
        await self._playback_over(playback_id, "done")
        return web.Response(status=204)

    async def _playback_over(self, playback_id: str, state: str) -> None:
        playback = self.playbacks.pop(playback_id, None)
        if playback is None:
            return
        playback["state"] = state
        if self._sockets:
            await self.send(self.event("PlaybackFinished", playback=playback))
        await self._notify()

    async def pick_up(self, channel_id: str) -> None:
        """A held ring (``answers``: "held") is answered: it enters the application."""
        await self._enter(channel_id, self._held.pop(channel_id))

    async def _enter(self, channel_id: str, args: tuple[str, ...]) -> None:
        channel = self.channels[channel_id]
        channel["state"] = "Up"
        channel["dialplan"].update(app_name="Stasis", app_data=",".join((self.app_name, *args)))
        await self.send(self.event("StasisStart", args=list(args), channel=channel))

    async def _originate(self, request: web.Request) -> web.Response:
        q = request.query
        if "endpoint" not in q:
            return _error(400, "Endpoint must be specified")
        if "app" not in q:
            return _error(400, "Application or extension must be specified")
        if q["endpoint"] in self.refuse_endpoints:
            # As Asterisk answers it: "error", not "message".
            return web.json_response({"error": "Allocation failed"}, status=500)
        channel_id = (
            q.get("channelId") or f"{datetime.now(UTC).timestamp():.0f}.{len(self.channels)}"
        )
        if channel_id in self.channels:
            return _error(409, "Channel with given unique ID already exists")
        args = tuple(a for a in q.get("appArgs", "").split(",") if a)
        channel = self.new_channel(
            channel_id, q.get("callerId", ""), name=f"{q['endpoint']}-00000001", state="Down",
            args=args, exten="s",
        )  # fmt: skip
        channel["dialplan"].update(app_name="AppDial2", app_data="(Outgoing Line)")
        answer = self.answers.get(q["endpoint"], self.answer_originates)
        ring = float(q.get("timeout", "30"))
        asyncio.get_running_loop().call_soon(
            lambda: asyncio.ensure_future(self._ring(channel_id, args, answer=answer, ring=ring))
        )
        return web.json_response(channel)

    async def _ring(
        self, channel_id: str, args: tuple[str, ...], *, answer: bool | str | None, ring: float
    ) -> None:
        await asyncio.sleep(0.02)
        if channel_id not in self.channels:
            return  # hung up at once
        if answer is None or answer == "held":
            self.channels[channel_id]["state"] = "Ringing"
            if answer == "held":
                self._held[channel_id] = args
            await self._notify()
            # Rings out: Asterisk ends the dial at the originate's timeout (if still there).
            await asyncio.sleep(ring)
            channel = self.channels.get(channel_id)
            if channel is not None and channel["dialplan"]["app_name"] != "Stasis":
                await self.hang_up(channel_id, cause=19, hangup_request=False)
            return
        if answer:
            await self._enter(channel_id, args)
        else:
            # Busy: the unanswered leg is destroyed at once (Local/busy reports cause 0).
            await self.hang_up(channel_id, cause=0, hangup_request=False)

    async def _create_bridge(self, request: web.Request) -> web.Response:
        q = request.query
        bridge_id = q.get("bridgeId") or f"bridge-{len(self.bridges) + 1}"
        bridge = self.bridges.setdefault(
            bridge_id,
            {
                "id": bridge_id,
                "technology": "simple_bridge",
                "bridge_type": q.get("type", "mixing"),
                "bridge_class": "stasis",
                "creator": "Stasis",
                "name": q.get("name", ""),
                "channels": [],
                "creationtime": timestamp(),
                "video_mode": "talker",
            },
        )
        return web.json_response(bridge)

    async def _add_channel(self, request: web.Request) -> web.Response:
        bridge = self.bridges.get(request.match_info["id"])
        if bridge is None:
            return _error(404, "Bridge not found")
        wanted = [c for c in request.query.get("channel", "").split(",") if c]
        if not wanted or any(c not in self.channels for c in wanted):
            return _error(400, "Channel not found")
        for c in wanted:
            if c not in bridge["channels"]:
                bridge["channels"].append(c)
        return web.Response(status=204)

    async def _destroy_bridge(self, request: web.Request) -> web.Response:
        if self.bridges.pop(request.match_info["id"], None) is None:
            return _error(404, "Bridge not found")
        return web.Response(status=204)

    # -- waiting in tests -----------------------------------------------------------

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def until(self, check: Any, timeout: float = 5.0) -> None:
        """Wait until ``check()`` holds (re-checked on every request and connection change)."""

        async def wait() -> None:
            async with self._changed:
                while not check():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), 0.05)

        try:
            await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"fake ARI: condition not met; requests: {self.requests}"
            ) from None

    async def wait_connected(self, connections: int = 1) -> None:
        await self.until(lambda: self.connected and self.connections >= connections)

    def asked(self, method: str, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path == path]


_CAUSES = {
    0: "Unknown",
    16: "Normal Clearing",
    17: "User busy",
    19: "User alerting, no answer",
    21: "Call Rejected",
}


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)
