"""The few ARI REST calls the adapter makes, over one aiohttp session.

Every call is under ``/ari``, takes its parameters in the query string and
authenticates with HTTP Basic. "Void" operations answer 204; errors come back
as ``{"message": …}`` with 4xx, which ``PeerRequestFailed`` carries on with
the status, so the caller can tell "the channel is gone" (404) from a fault.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
from pydantic import ValidationError

from callcenter.errors import PeerRequestFailed
from callcenter.telephony_adapters.ari_events import Channel, parse_channels

#: Seconds one REST call may take before it counts as failed (unless told otherwise).
REQUEST_TIMEOUT = 5.0


class AriRest:
    """ARI's REST side. ``base_url`` is the HTTP server, e.g. ``http://127.0.0.1:8088``."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        headers: Mapping[str, str],
        *,
        timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._root = base_url.rstrip("/") + "/ari"
        self._headers = dict(headers)

    async def _call(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        url = self._root + path
        try:
            async with self._session.request(
                method,
                url,
                params=dict(params or {}),
                json=body,
                headers=self._headers,
                timeout=self._timeout,
            ) as resp:
                text = await resp.text()
                if resp.status >= 400:
                    raise PeerRequestFailed(
                        f"ARI {method} {path}: {resp.status} {_message(text)}",
                        peer_status=resp.status,
                    )
                if resp.status == 204 or not text:
                    return None
                return json.loads(text)
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
            raise PeerRequestFailed(f"ARI {method} {path}: {type(exc).__name__}: {exc}") from exc

    async def channels(self) -> list[Channel]:
        """Every channel of the Asterisk (``GET /channels``), ours and others."""
        return parse_channels(await self._call("GET", "/channels"))

    async def answer(self, channel_id: str) -> None:
        await self._call("POST", f"/channels/{_seg(channel_id)}/answer")

    async def start_moh(self, channel_id: str, moh_class: str | None = None) -> None:
        params = {"mohClass": moh_class} if moh_class else {}
        await self._call("POST", f"/channels/{_seg(channel_id)}/moh", params)

    async def stop_moh(self, channel_id: str) -> None:
        await self._call("DELETE", f"/channels/{_seg(channel_id)}/moh")

    async def play(self, channel_id: str, media: str, playback_id: str) -> None:
        """Play ``media`` (``sound:…``) to the channel; ``PlaybackFinished`` says when done."""
        await self._call(
            "POST",
            f"/channels/{_seg(channel_id)}/play",
            {"media": media, "playbackId": playback_id},
        )

    async def stop_playback(self, playback_id: str) -> None:
        await self._call("DELETE", f"/playbacks/{_seg(playback_id)}")

    async def hangup(self, channel_id: str, reason: str = "normal") -> None:
        await self._call("DELETE", f"/channels/{_seg(channel_id)}", {"reason": reason})

    async def originate(
        self,
        *,
        endpoint: str,
        app: str,
        app_args: Sequence[str],
        channel_id: str,
        caller_id: str | None = None,
        ring_seconds: int = 30,
        variables: Mapping[str, str] | None = None,
    ) -> Channel:
        """Dial ``endpoint``; once answered, the channel enters ``app`` with ``app_args``."""
        params = {
            "endpoint": endpoint,
            "app": app,
            "appArgs": ",".join(app_args),
            "channelId": channel_id,
            "timeout": str(ring_seconds),
        }
        if caller_id:
            params["callerId"] = caller_id
        body = {"variables": dict(variables)} if variables else None
        data = await self._call("POST", "/channels", params, body)
        try:
            return Channel.model_validate(data)
        except ValidationError as exc:
            raise PeerRequestFailed(f"ARI POST /channels answered no channel: {exc}") from exc

    async def create_bridge(self, bridge_id: str, name: str = "") -> dict[str, Any]:
        params = {"type": "mixing", "bridgeId": bridge_id}
        if name:
            params["name"] = name
        data: dict[str, Any] = await self._call("POST", "/bridges", params)
        return data

    async def add_channels(self, bridge_id: str, channel_ids: Sequence[str]) -> None:
        await self._call(
            "POST", f"/bridges/{_seg(bridge_id)}/addChannel", {"channel": ",".join(channel_ids)}
        )

    async def destroy_bridge(self, bridge_id: str) -> None:
        await self._call("DELETE", f"/bridges/{_seg(bridge_id)}")


def _seg(value: str) -> str:
    """One id as one path segment, whatever characters the peer put in it."""
    if value in ("", ".", ".."):
        raise PeerRequestFailed(f"not an ARI id: {value!r}")
    return quote(value, safe="")


def _message(text: str) -> str:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return text[:200]
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data["message"])
    return text[:200]
