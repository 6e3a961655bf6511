"""A typed customer number in the browser: the pending link and **Confirm identity**.

The caller typed C1001 from a phone that is not on C1001's record: the panel
says the call is served as C1001 for this call only and offers the button; the
ack of ``verify`` turns it into "confirmed by agent:ada" and the phone is linked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
from playwright.async_api import Page, expect

from tests.browser.conftest import Serve
from tests.browser.page_helpers import go_available, make_named_customer, page_url, sign_in
from tests.integration.queue_helpers import enqueue, make_agent, make_queue

NEW_PHONE = "+442079460018"


async def test_the_agent_confirms_a_typed_number_and_the_phone_is_linked(
    serve: Serve, page: Page, pool: asyncpg.Pool[Any], tmp_path: Path
) -> None:
    client = await serve(questions_file=None)
    await make_queue(client, "general", wrap_up_seconds=60, offer_timeout_seconds=60)
    _, token = await make_agent(client, "ada")
    customer_id = await make_named_customer(client, "C1001", "Ada Lovelace", 30000, "+12125550100")
    await page.set_viewport_size({"width": 1280, "height": 800})
    await sign_in(page, page_url(client), token)
    await go_available(page)

    answer = await enqueue(client, "pbx-1", ani="+44 20 7946 0018", customer_number="C1001")
    assert answer["identify"] == "pending"
    await expect(page.locator("#ring")).to_be_visible()
    await page.click("#accept")
    await expect(page.locator("#panel-missing")).to_be_hidden()

    recognised = page.locator("#customer-facts dd.recognised")
    await expect(recognised).to_have_attribute("data-by", "pending")
    await expect(recognised).to_contain_text("served as C1001 for this call only")
    box = page.locator("#verify-box")
    await expect(box).to_be_visible()
    await expect(page.locator("#verify-text")).to_have_text(
        "Served as C1001 for this call only. +442079460018 is not linked to them until you "
        "confirm who is calling (ask your security questions first)."
    )
    button = page.get_by_role("button", name="Confirm identity")
    await expect(button).to_be_enabled()
    await page.locator("#call").screenshot(path=str(tmp_path / "pending-link.png"))
    assert (
        await pool.fetchval("SELECT count(*) FROM customer_phones WHERE phone_e164 = $1", NEW_PHONE)
        == 0
    )

    await button.click()
    await expect(recognised).to_have_attribute("data-by", "linked")
    await expect(recognised).to_contain_text("agent:ada confirmed who is calling")
    await expect(button).to_be_hidden()
    await expect(page.locator("#verify-text")).to_contain_text("Identity confirmed by agent:ada")
    await expect(box).to_have_attribute("data-verified", "1")
    await page.locator("#call").screenshot(path=str(tmp_path / "confirmed.png"))
    owner = await pool.fetchval(
        "SELECT customer_id FROM customer_phones WHERE phone_e164 = $1", NEW_PHONE
    )
    assert owner == customer_id
