"""Issue 20 in the browser: the offer says how the caller kept their place.

A virtual call (the caller took a callback and hung up) is offered with the
number the service will ring on accept; a redial after a drop is offered with
how long the caller had waited before.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp.test_utils import TestServer
from playwright.async_api import Page, expect
from pydantic import SecretStr

from tests.browser.conftest import Serve
from tests.browser.page_helpers import page_url, sign_in
from tests.integration.queue_helpers import make_customer, make_queue
from tests.integration.telephony_fakes import GENERIC_SECRET, FakePBX, post_generic
from tests.integration.telephony_helpers import make_agent_with_endpoint

ServerFactory = Callable[..., Awaitable[TestServer]]


def _event(kind: str, call_id: str, **fields: str) -> bytes:
    return json.dumps({"type": kind, "call_id": call_id, **fields}).encode()


async def test_the_offer_says_a_callback_rings_the_caller_and_a_redial_kept_its_place(
    serve: Serve, page: Page, tmp_path: Path, aiohttp_server: ServerFactory
) -> None:
    pbx = FakePBX(ring_gate=asyncio.Event())
    pbx_server = await aiohttp_server(pbx.app(), host="127.0.0.1")
    client = await serve(
        questions_file=None,
        generic_webhook_secret=SecretStr(GENERIC_SECRET),
        generic_callback_url=str(pbx_server.make_url("/pbx/commands")),
    )
    await make_queue(client, "general", callback={"after_seconds": 0}, redial_window_seconds=300)
    await make_customer(client, "C-9", 30000, "+12125550109")
    status, reply = await post_generic(
        client, _event("call.incoming", "pbx-9", **{"from": "+12125550109"})
    )
    assert status == 200 and reply["offer_callback"] is True
    status, _ = await post_generic(client, _event("call.callback_requested", "pbx-9"))
    assert status == 200
    await post_generic(client, _event("call.hangup", "pbx-9"))

    _, token = await make_agent_with_endpoint(client, "ada", "sip:ada@pbx.example")
    await page.set_viewport_size({"width": 1280, "height": 800})
    await sign_in(page, page_url(client), token)
    await page.click("#go-available")
    keep = page.locator("#ring-keep")
    await expect(keep).to_have_text(
        "Callback: the caller is not on the line; we ring them at +12125550109 when you accept."
    )
    await page.screenshot(path=str(tmp_path / "offer-callback.png"))
    await page.locator("#reject").click()

    # A caller who dropped and rang again: back in their place, and the agent is told.
    await make_customer(client, "C-10", 100, "+12125550110")
    await post_generic(client, _event("call.incoming", "pbx-10", **{"from": "+12125550110"}))
    await post_generic(client, _event("call.hangup", "pbx-10"))
    status, redial = await post_generic(
        client, _event("call.incoming", "pbx-11", **{"from": "+12125550110"})
    )
    assert redial["call"]["resumed"] is True
    resp = await client.post(f"/api/calls/{reply['call']['id']}/end", json={"outcome": "abandoned"})
    assert resp.status == 200
    await page.click("#go-available")
    await expect(keep).to_contain_text("Called back after a drop (waited 0:0")
    await expect(keep).to_contain_text("they kept their place.")
    await page.screenshot(path=str(tmp_path / "offer-redial.png"))
    await page.locator("#reject").click()

    # The callback accepted: the panel says the caller is being rung, then that they answered.
    status, _ = await post_generic(client, _event("call.callback_requested", "pbx-11"))
    assert status == 200
    await post_generic(client, _event("call.hangup", "pbx-11"))
    await page.click("#go-available")
    await expect(keep).to_contain_text("Callback: the caller is not on the line")
    await page.locator("#accept").click()
    line = page.locator("#call-keep")
    await expect(line).to_have_text(
        "Callback: ringing the caller at +12125550110; they come on the line when they answer."
    )
    await page.screenshot(path=str(tmp_path / "callback-ringing.png"))
    assert pbx.ring_gate is not None
    pbx.ring_gate.set()
    await expect(line).to_have_text("Callback: the caller answered at +12125550110.")
    await page.screenshot(path=str(tmp_path / "callback-answered.png"))
