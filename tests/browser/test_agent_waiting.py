"""Issue 18, part 5 in the browser: the offline screen shows who waits in the agent's queues.

Pushed by the server as calls come and go (no reload, no polling by the page),
with the longest wait ticking, so going available is an informed choice.
"""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Page, expect

from tests.browser.conftest import Serve
from tests.browser.page_helpers import page_url, sign_in
from tests.integration.queue_helpers import enqueue, make_agent, make_queue


async def test_the_offline_screen_shows_the_callers_waiting_and_the_longest_wait(
    serve: Serve, page: Page, tmp_path: Path
) -> None:
    client = await serve(questions_file=None)
    await make_queue(client, "general")
    await make_queue(client, "billing")
    _, token = await make_agent(client, "ada", queues=["general", "billing"])
    await page.set_viewport_size({"width": 1280, "height": 800})
    await sign_in(page, page_url(client), token)
    await expect(page.locator("#idle-text")).to_have_text(
        "You are offline: press Available to take calls."
    )
    general = page.locator("#waiting-list li[data-queue=general]")
    billing = page.locator("#waiting-list li[data-queue=billing]")
    await expect(general).to_have_text("general nobody waiting")
    await expect(billing).to_have_text("billing nobody waiting")

    first = await enqueue(client, "pbx-1")
    await enqueue(client, "pbx-2")
    await expect(general).to_contain_text("2 waiting, longest 0:0")
    await expect(general).to_contain_text("2 waiting, longest 0:02", timeout=5_000)  # it ticks
    await expect(billing).to_have_text("billing nobody waiting")
    await page.screenshot(path=str(tmp_path / "offline-with-callers-waiting.png"))

    resp = await client.post(f"/api/calls/{first['call']['id']}/end", json={"outcome": "abandoned"})
    assert resp.status == 200
    await expect(general).to_contain_text("1 waiting, longest 0:0")
