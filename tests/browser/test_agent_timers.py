"""Issue 18, part 2 in the browser: the call's clocks, and a wrap-up timer that never eats work.

The issue's case is "type for 20 s past a 10 s wrap-up timer and lose nothing";
here the queue's timer is 2 s and the agent types for about four times that,
so the test takes seconds, not half a minute, and proves the same thing: the
wrap-up is held while the agent writes (the next caller, waiting all along,
does not ring), focus and text stay, and Finish stores every character.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
from playwright.async_api import Page, expect

from tests.browser.conftest import Serve
from tests.browser.page_helpers import go_available, page_url, sign_in
from tests.integration.queue_helpers import enqueue, make_agent, make_queue

NOTE = (
    "Caller asked to move the card limit to 5000 before travelling; explained the "
    "two-day review and booked a call back for Friday."
)


async def test_typing_past_the_wrap_up_timer_loses_nothing(
    serve: Serve, page: Page, pool: asyncpg.Pool[Any], tmp_path: Path
) -> None:
    client = await serve(questions_file=None)
    await make_queue(
        client, "general", wrap_up_seconds=2, wrap_up_max_seconds=60, offer_timeout_seconds=60
    )
    _, token = await make_agent(client, "ada")
    await page.set_viewport_size({"width": 1280, "height": 800})
    await sign_in(page, page_url(client), token)
    await go_available(page)
    first = (await enqueue(client, "pbx-1", ani="+12125550100"))["call"]["id"]
    await page.click("#accept")
    clock = page.locator("#call-clock")
    await expect(clock).to_have_text("Talk 0:00")
    await expect(clock).to_have_text("Talk 0:01")  # it ticks
    await page.screenshot(path=str(tmp_path / "talk-time.png"))
    await page.click("#end-call")
    await expect(page.locator("#agent-state")).to_have_attribute("data-state", "wrap_up")
    await expect(clock).to_contain_text("Wrap-up ends in 0:0")
    await enqueue(client, "pbx-2", ani="+12125550101")  # the next caller waits

    notes = page.locator("#notes")
    await notes.click()
    # About 8 s of typing (4x the timer), at a person's pace.
    await notes.press_sequentially(NOTE, delay=60, timeout=60_000)
    await expect(page.locator("#agent-state")).to_have_attribute("data-state", "wrap_up")
    await expect(page.locator("#ring")).to_be_hidden()
    await expect(notes).to_be_focused()
    await expect(notes).to_have_value(NOTE)
    await expect(clock).to_contain_text("held while you write")
    await page.screenshot(path=str(tmp_path / "wrap-up-held.png"))
    held = await pool.fetchval(
        "SELECT wrap_up_until - (SELECT ended_at FROM calls WHERE id = $1) FROM agents"
        " WHERE name = 'ada'",
        first,
    )
    assert held.total_seconds() > 2

    await notes.press("Control+Enter")
    await expect(page.locator("#ring")).to_be_visible()  # now the next call rings
    stored = await pool.fetchval(
        "SELECT i.notes FROM interactions i JOIN calls c ON c.interaction_id = i.id"
        " WHERE c.id = $1",
        first,
    )
    assert stored == NOTE
