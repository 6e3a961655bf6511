"""Issue 18, part 3 in the browser: the last conversation on top, visible without scrolling.

A caller with one real contact and 15 abandoned attempts since: at 1280x800 the
first thing under their name says when, with whom, how it ended, the notes and
the answer, and "15 abandoned attempts since, longest wait 4:10"; the history
below shows the attempts as one line instead of fifteen empty rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import asyncpg
from playwright.async_api import Page, expect

from tests.browser.conftest import Serve
from tests.browser.page_helpers import go_available, make_named_customer, page_url, sign_in
from tests.browser.test_agent_panel_flow import CARDS, CARDS_COUNT, TRANSFER, WAIVER, add_bank
from tests.integration.queue_helpers import enqueue, make_agent, make_queue

PHONE = "+12125550123"
NOTES = "Card blocked abroad; sent a new one by courier and waived the fee. Call back if late."


async def _seed(pool: asyncpg.Pool[Any], customer_id: int) -> None:
    """One conversation two days ago (with its answer), then 15 calls given up on."""
    talked = await pool.fetchval(
        "INSERT INTO interactions (customer_id, channel, started_at, ended_at, agent, outcome,"
        " notes, details) VALUES ($1, 'phone', now() - interval '2 days',"
        " now() - interval '2 days' + interval '6 minutes', 'linus', 'completed', $2, $3)"
        " RETURNING id",
        customer_id,
        NOTES,
        {"waited_seconds": 12.0},
    )
    await pool.execute(
        "INSERT INTO answers (customer_id, question_key, value, answered_at, interaction_id)"
        " VALUES ($1, 'cards_elsewhere', $2, now() - interval '2 days', $3)",
        customer_id,
        json.loads("true"),
        talked,
    )
    for i in range(15):
        wait = 250.0 if i == 7 else 30.0 + i
        await pool.execute(
            "INSERT INTO interactions (customer_id, channel, started_at, ended_at, outcome,"
            " details) VALUES ($1, 'phone', now() - make_interval(hours => 40 - 2 * $2),"
            " now() - make_interval(hours => 40 - 2 * $2) + make_interval(secs => $3),"
            " 'abandoned', $4)",
            customer_id,
            i,
            wait,
            {"waited_seconds": wait},
        )


async def test_the_last_contact_is_on_top_for_a_caller_with_15_abandoned_attempts(
    serve: Serve, page: Page, pool: asyncpg.Pool[Any], tmp_path: Path
) -> None:
    client = await serve(questions_file=None)
    await make_queue(client, "general", wrap_up_seconds=60, offer_timeout_seconds=60)
    await add_bank(client, [CARDS, CARDS_COUNT], [WAIVER, TRANSFER])
    customer_id = await make_named_customer(client, "C-1", "Ada Lovelace", 6000, PHONE)
    await _seed(pool, customer_id)
    _, token = await make_agent(client, "ada")
    await page.set_viewport_size({"width": 1280, "height": 800})
    await sign_in(page, page_url(client), token)
    await go_available(page)
    await enqueue(client, "pbx-1", ani=PHONE)
    await expect(page.locator("#ring")).to_be_visible()
    await page.click("#accept")
    await expect(page.locator("#panel-missing")).to_be_hidden()

    last = page.locator("#last-contact")
    await expect(last).to_be_visible()
    await expect(page.locator("#last-contact-head")).to_contain_text("Last contact 2 days ago")
    await expect(page.locator("#last-contact-head")).to_contain_text("with linus · completed")
    await expect(page.locator("#last-contact-notes")).to_have_text(NOTES)
    await expect(page.locator("#last-contact-answer")).to_have_text(
        "Answer: Do you hold cards with another bank? yes"
    )
    await expect(page.locator("#last-contact-attempts")).to_contain_text(
        "15 abandoned attempts since, longest wait 4:10 (the latest 12 hours ago)"
    )
    # All of it on the first screen, without scrolling, and the wrap-up beside it.
    assert await page.evaluate("window.scrollY") == 0
    for part in ("#last-contact-attempts", "#last-contact-notes", "#notes", "#finish"):
        box = await page.locator(part).bounding_box()
        assert box is not None and box["y"] + box["height"] <= 800, (part, box)
    # The history: the fifteen attempts are one line, then the conversation.
    rows = page.locator("#history-rows tr")
    await expect(rows).to_have_count(2)
    await expect(rows.nth(0)).to_have_attribute("data-count", "15")
    await expect(rows.nth(0)).to_contain_text("15 abandoned attempts, longest wait 4:10")
    await expect(rows.nth(1)).to_contain_text(NOTES)
    await page.screenshot(path=str(tmp_path / "last-contact-on-top.png"))
    await page.screenshot(path=str(tmp_path / "last-contact-full.png"), full_page=True)
