"""Issue 18, part 1 in the browser: a caller the service could not name is found and picked.

A shared number lists its customers and the agent picks one; a withheld caller
is searched for and picked; the card turns into the customer's, with their
history. Screenshots at 1280x800 go to the test's directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient
from playwright.async_api import Page, expect

from tests.browser.conftest import Serve
from tests.browser.page_helpers import go_available, page_url, sign_in
from tests.integration.queue_helpers import add_customer, enqueue, make_agent, make_queue

SHARED = "+12125550100"


async def _take_call(page: Page, client: TestClient[Any, Any], external: str, **fields: Any) -> int:
    answer = await enqueue(client, external, **fields)
    await expect(page.locator("#ring")).to_be_visible()
    await page.click("#accept")
    await expect(page.locator("#panel-missing")).to_be_hidden()
    call_id: int = answer["call"]["id"]
    return call_id


async def test_the_agent_picks_a_customer_of_a_shared_number_and_sees_their_history(
    serve: Serve, page: Page, pool: asyncpg.Pool[Any], tmp_path: Path
) -> None:
    client = await serve(questions_file=None)
    await make_queue(client, "general", wrap_up_seconds=60, offer_timeout_seconds=60)
    ada = await add_customer(
        client, "C1", "Ada Lovelace", phones=[SHARED], shared_phones=[SHARED], lifetime_value=30000
    )
    await add_customer(client, "C2", "Byron Lovelace", phones=[SHARED], shared_phones=[SHARED])
    await pool.execute(
        "INSERT INTO interactions (customer_id, channel, started_at, ended_at, agent, outcome,"
        " notes) VALUES ($1, 'phone', now() - interval '3 days', now() - interval '3 days',"
        " 'linus', 'completed', 'card blocked abroad, sent a new one')",
        ada,
    )
    _, token = await make_agent(client, "grace")
    await page.set_viewport_size({"width": 1280, "height": 800})
    await sign_in(page, page_url(client), token)
    await go_available(page)
    call_id = await _take_call(page, client, "pbx-1", ani=SHARED)

    box = page.locator("#caller-box")
    await expect(box).to_be_visible()
    await expect(page.locator("#caller-hint")).to_contain_text("Several customers share")
    rows = page.locator("#caller-candidates > li")
    await expect(rows).to_have_count(2)
    ada_row = rows.filter(has_text="Ada Lovelace")
    await expect(ada_row).to_contain_text("C1")
    await expect(ada_row).to_contain_text("platinum")
    await expect(ada_row).to_contain_text("3 days ago")
    await expect(rows.filter(has_text="Byron Lovelace")).to_contain_text("no contact yet")
    await expect(page.locator("#history")).to_be_hidden()  # nobody yet: no history
    await page.screenshot(path=str(tmp_path / "shared-number-candidates.png"))

    await ada_row.get_by_role("button", name="this is the caller").click()
    await expect(page.locator("#call-title")).to_have_text("On call with Ada Lovelace")
    await expect(page.locator("#customer-facts dd.recognised")).to_have_attribute(
        "data-by", "agent"
    )
    await expect(page.locator("#customer-facts dd.recognised")).to_contain_text(
        "agent:grace picked them as the caller"
    )
    await expect(page.locator("#history-rows")).to_contain_text(
        "card blocked abroad, sent a new one"
    )
    # Picked: a re-pick is one click away (by search), folded so it does not take the card.
    await expect(page.locator("#caller-candidates")).to_be_hidden()
    await expect(page.locator("#caller-title")).to_have_text("Not them? Find the caller again")
    await expect(page.locator("#caller-query")).to_be_hidden()
    await page.screenshot(path=str(tmp_path / "shared-number-picked.png"))
    stored = await pool.fetchrow(
        "SELECT customer_id, verified_by FROM calls WHERE id = $1", call_id
    )
    assert tuple(stored) == (ada, "agent:grace")


async def test_the_agent_searches_for_a_withheld_caller_and_picks_them(
    serve: Serve, page: Page, pool: asyncpg.Pool[Any], tmp_path: Path
) -> None:
    client = await serve(questions_file=None)
    await make_queue(client, "general", wrap_up_seconds=60, offer_timeout_seconds=60)
    ada = await add_customer(client, "C1001", "Ada Lovelace", phones=["+16465550199"])
    await add_customer(client, "C1002", "Charles Babbage")
    _, token = await make_agent(client, "grace")
    await page.set_viewport_size({"width": 1280, "height": 800})
    await sign_in(page, page_url(client), token)
    await go_available(page)
    call_id = await _take_call(page, client, "pbx-1", ani="anonymous")

    await expect(page.locator("#caller-hint")).to_contain_text("The number is withheld")
    query = page.get_by_label("Find the caller: customer number, name or another phone")
    # Too short to search: the refusal is next to the field, which is marked and focused.
    await query.fill("ab")
    await query.press("Enter")
    await expect(page.locator("#caller-error")).to_contain_text("at least 3 characters")
    await expect(query).to_have_attribute("aria-invalid", "true")
    await expect(query).to_be_focused()

    await query.fill("lovelace")
    await query.press("Enter")
    found = page.locator("#caller-found > li")
    await expect(found).to_have_count(1)
    await expect(found).to_contain_text("Ada Lovelace")
    await expect(page.locator("#caller-error")).to_have_text("")
    await expect(found.get_by_role("button")).to_be_focused()
    await page.screenshot(path=str(tmp_path / "withheld-search.png"))

    await query.fill("nobody-like-this")
    await query.press("Enter")
    await expect(page.locator("#caller-nobody")).to_be_visible()
    await query.fill("(646) 555-0199")
    await query.press("Enter")
    await expect(found).to_have_count(1)
    await found.get_by_role("button", name="this is the caller").click()
    await expect(page.locator("#call-title")).to_have_text("On call with Ada Lovelace")
    await expect(page.locator("#customer-facts")).to_contain_text("C1001")
    await expect(page.locator("#caller-found > li")).to_have_count(0)
    await page.screenshot(path=str(tmp_path / "withheld-picked.png"))
    assert await pool.fetchval("SELECT customer_id FROM calls WHERE id = $1", call_id) == ada
