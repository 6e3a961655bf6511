"""A real Asterisk for the tests, and the test's own hands on it.

``AsteriskPeer`` runs ``../shared/peers/asterisk/start.sh`` (the prebuilt
Asterisk next to the repository, see its README) on a free port of 127.0.0.1,
unpacked into a temporary folder unless ``/opt/asterisk-test`` has it already,
and stops it by its pid. ``Driver`` is the test's own ARI application
(``drv``): it places callers (``Local/<digits>@incoming``, whose ``;2`` half
enters ``Stasis(callcenter)``), presses their keys and hangs them up, as the
README describes. ``Cutter`` is a TCP proxy between the service and Asterisk
whose connections a test can cut, as a network fault does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

#: The peer, next to the repository (``../shared/peers/asterisk``).
PEER_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "peers" / "asterisk"
#: Where the peer's README installs Asterisk; used when it is there already.
INSTALLED = Path("/opt/asterisk-test")
USER = "callcenter"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie left to init does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class AsteriskPeer:
    """One Asterisk process: ``start``, ``stop`` and ``restart`` on the same port and folder."""

    def __init__(self, run_dir: Path, prefix: Path) -> None:
        self.run_dir = run_dir
        self.prefix = prefix
        self.port = free_port()
        self.password = secrets.token_hex(12)
        self.pid: int | None = None
        #: Seconds each start took (unpacking included the first time).
        self.start_seconds: list[float] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth_header(self) -> dict[str, str]:
        token = base64.b64encode(f"{USER}:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def start(self) -> None:
        started = time.monotonic()
        done = subprocess.run(
            [str(PEER_DIR / "start.sh"), str(self.run_dir), str(self.port), self.password],
            env={**os.environ, "PREFIX": str(self.prefix)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"Asterisk did not start: {done.stderr.strip()}")
        self.pid = int(done.stdout.split()[-1])
        self.start_seconds.append(time.monotonic() - started)

    def stop(self, timeout: float = 15.0) -> None:
        pid, self.pid = self.pid, None
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 5
            time.sleep(0.05)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = (self.run_dir / "log" / "messages.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


async def until(
    check: Callable[[], Awaitable[bool]], what: str, timeout: float = 10.0, every: float = 0.02
) -> float:
    """Wait until ``check()`` holds, at most ``timeout`` s; returns how long it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while not await check():
        if loop.time() - started > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(every)
    return loop.time() - started


class Driver:
    """The test's ARI application ``drv``: callers, their keys and their hang-ups."""

    APP = "drv"

    def __init__(self, peer: AsteriskPeer) -> None:
        self.peer = peer
        self.session = aiohttp.ClientSession(
            base_url=peer.url, headers=peer.auth_header, timeout=aiohttp.ClientTimeout(total=10)
        )
        self.events: list[dict[str, Any]] = []
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._numbers = itertools.count(1)

    async def open(self) -> None:
        """Hold the ``drv`` application (a channel sent to an app nobody holds is hung up)."""
        url = f"ws://127.0.0.1:{self.peer.port}/ari/events?app={self.APP}"
        self._ws = await ws_connect(url, additional_headers=self.peer.auth_header, proxy=None)
        self._reader = asyncio.create_task(self._read(self._ws))

    async def reopen(self) -> None:
        """Hold the application again (after Asterisk restarted)."""
        await self.close()
        self.session = aiohttp.ClientSession(
            base_url=self.peer.url,
            headers=self.peer.auth_header,
            timeout=aiohttp.ClientTimeout(total=10),
        )
        await self.open()

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(Exception):
            async for frame in ws:
                self.events.append(json.loads(frame))

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        await self.session.close()

    async def _call(self, method: str, path: str, **params: str) -> Any:
        async with self.session.request(method, f"/ari{path}", params=params) as resp:
            text = await resp.text()
            if resp.status >= 400:
                raise AssertionError(f"ARI {method} {path}: {resp.status} {text}")
            return json.loads(text) if text else None

    async def caller(self, digits: str, *, queue: str | None = None) -> tuple[str, str]:
        """Place a caller with caller id ``+<digits>``; ``(our side, the service's channel)``."""
        n = next(self._numbers)
        ours, theirs = f"drv-{n}-{secrets.token_hex(3)}", f"caller-{n}-{secrets.token_hex(3)}"
        context = "incoming" if queue is None else "incoming-queue"
        params = {
            "endpoint": f"Local/{digits}@{context}",
            "app": self.APP,
            "channelId": ours,
            "otherChannelId": theirs,
        }
        body = {"variables": {"QUEUE": queue}} if queue else None
        async with self.session.post("/ari/channels", params=params, json=body) as resp:
            assert resp.status == 200, await resp.text()
        return ours, theirs

    async def press(self, ours: str, keys: str) -> None:
        """Press ``keys`` on our side of a caller, once it is in our application (the
        Local pair's ``;1`` half enters it only when the service answers the caller:
        on a busy machine that can come after the service already counts the call)."""

        async def in_app() -> bool:
            return any(
                e.get("type") == "StasisStart" and e.get("channel", {}).get("id") == ours
                for e in self.events
            )

        await until(in_app, f"{ours} is in the driver's application")
        await self._call("POST", f"/channels/{ours}/dtmf", dtmf=keys)

    async def hang_up(self, channel_id: str) -> None:
        await self._call("DELETE", f"/channels/{channel_id}")

    async def channels(self) -> dict[str, dict[str, Any]]:
        return {c["id"]: c for c in await self._call("GET", "/channels")}

    async def bridges(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self._call("GET", "/bridges")
        return found

    async def bridged_with(self, channel_id: str) -> list[str]:
        """The other channels in ``channel_id``'s bridge (none: not bridged)."""
        for bridge in await self.bridges():
            if channel_id in bridge["channels"]:
                return [c for c in bridge["channels"] if c != channel_id]
        return []

    async def clear(self) -> None:
        """Hang up every channel and wait until Asterisk has none (the next test starts clean)."""
        for channel_id in await self.channels():
            with contextlib.suppress(AssertionError):
                await self.hang_up(channel_id)

        async def empty() -> bool:
            return not await self.channels()

        await until(empty, "Asterisk has no channels left")


class Cutter:
    """A TCP proxy to Asterisk; ``cut`` drops every connection and refuses new ones."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.open = True
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    def cut(self) -> None:
        self.open = False
        for writer in list(self._writers):
            writer.transport.abort()

    def restore(self) -> None:
        self.open = True

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
