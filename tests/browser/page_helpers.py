"""Helpers for the agent page tests: open the page, sign in, and a TCP proxy that goes silent."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp.test_utils import TestClient
from playwright.async_api import Page, expect


def page_url(client: TestClient[Any, Any], path: str = "/agent") -> str:
    return str(client.make_url(path))


async def sign_in(page: Page, url: str, token: str) -> None:
    """Open the page, paste the token, and wait until the panel is connected."""
    await page.goto(url)
    await page.fill("#token", token)
    await page.click("#sign-in-form button[type=submit]")
    await expect(page.locator("#conn")).to_have_attribute("data-conn", "connected")


async def go_available(page: Page) -> None:
    await page.click("#go-available")
    await expect(page.locator("#agent-state")).to_have_attribute("data-state", "available")


async def make_named_customer(
    client: TestClient[Any, Any], number: str, name: str, value: int, phone: str
) -> int:
    resp = await client.post(
        "/api/customers",
        json={"customer_number": number, "name": name, "lifetime_value": value, "phones": [phone]},
    )
    assert resp.status == 201, await resp.text()
    customer_id: int = (await resp.json())["id"]
    return customer_id


class _Link:
    """One proxied connection: two pipes, and whether they still forward."""

    def __init__(self, first_line: bytes) -> None:
        self.first_line = first_line
        self.frozen = False
        self.tasks: list[asyncio.Task[None]] = []
        self.writers: list[asyncio.StreamWriter] = []


class SilentProxy:
    """A TCP proxy on 127.0.0.1 in front of the service that can go silent.

    ``freeze()`` makes every open connection stop forwarding in both directions
    without closing it: to both ends the link looks alive but nothing arrives,
    as when a network path dies. New connections are forwarded as usual.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.links: list[_Link] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> SilentProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def websocket_links(self) -> list[_Link]:
        return [link for link in self.links if link.first_line.startswith(b"GET /ws/agent")]

    def freeze(self) -> None:
        for link in self.links:
            link.frozen = True

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await reader.read(65536)
        if not first:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        link = _Link(first.split(b"\r\n", 1)[0])
        link.writers = [writer, up_writer]
        self.links.append(link)
        up_writer.write(first)
        link.tasks = [
            asyncio.create_task(self._pipe(reader, up_writer, link)),
            asyncio.create_task(self._pipe(up_reader, writer, link)),
        ]

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, link: _Link) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await src.read(65536):
                if link.frozen:
                    await asyncio.Event().wait()  # hold the bytes forever: a dead path
                dst.write(data)
                await dst.drain()
        dst.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in self.links:
            for task in link.tasks:
                task.cancel()
            for w in link.writers:
                w.close()
        await asyncio.gather(
            *(t for link in self.links for t in link.tasks), return_exceptions=True
        )
        if self._server is not None:
            await self._server.wait_closed()
