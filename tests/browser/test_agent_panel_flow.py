"""The assist panel in the browser: history, the learning question, treatments, wrap-up.

Each test starts the service without the shipped bank file
(``questions_file=None``) and creates the questions it needs through the API,
so what the agent sees is known exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient
from playwright.async_api import Page, expect

from tests.browser.conftest import Serve
from tests.browser.page_helpers import go_available, make_named_customer, page_url, sign_in
from tests.integration.queue_helpers import Panel, enqueue, make_agent, make_queue

CARDS = {
    "key": "cards_elsewhere",
    "text": "Do you hold cards with another bank?",
    "kind": "yes_no",
    "priority": 10,
}
CARDS_COUNT = {
    "key": "cards_count",
    "text": "How many cards do you hold elsewhere?",
    "kind": "number",
    "min_value": 1,
    "max_value": 20,
    "priority": 20,
    "condition": {"answer": "cards_elsewhere", "eq": "yes"},
}
CHANNEL = {
    "key": "contact_channel",
    "text": "How should we reach you?",
    "kind": "choice",
    "choices": ["phone", "email", "letter"],
    "priority": 10,
}
FEES = {
    "key": "fee_feedback",
    "text": "Anything about our fees?",
    "kind": "text",
    "priority": 20,
}
WAIVER = {
    "key": "fee_waiver",
    "title": "Offer the fee waiver",
    "kind": "offer",
    "detail": "Waive next year's card fee.",
    "condition": {"tier": ["platinum", "gold"]},
    "reason": "a valuable customer",
    "priority": 10,
}
TRANSFER = {
    "key": "balance_transfer",
    "title": "Mention the balance transfer",
    "kind": "tone",
    "condition": {"all": [{"answer": "cards_elsewhere", "eq": "yes"}, {"value": {"gte": 5000}}]},
    "reason": "customers with cards elsewhere move balances when asked",
    "priority": 20,
}


async def add_bank(
    client: TestClient[Any, Any],
    questions: Sequence[dict[str, Any]],
    treatments: Sequence[dict[str, Any]] = (),
) -> None:
    for question in questions:
        resp = await client.post("/api/questions", json=question)
        assert resp.status == 201, await resp.text()
    for treatment in treatments:
        resp = await client.post("/api/treatments", json=treatment)
        assert resp.status == 201, await resp.text()


async def take_call(page: Page, client: TestClient[Any, Any], pbx_id: str, ani: str) -> int:
    """A call comes in, rings, is accepted, and its panel is on the screen."""
    call_id: int = (await enqueue(client, pbx_id, ani=ani))["call"]["id"]
    await expect(page.locator("#ring")).to_be_visible()
    await page.click("#accept")
    await expect(page.locator("#call")).to_have_attribute("data-call-id", str(call_id))
    await expect(page.locator("#panel-missing")).to_be_hidden()
    return call_id


async def finish(page: Page) -> None:
    await page.click("#finish")
    await expect(page.locator("#agent-state")).to_have_text("Available")
    await expect(page.locator("#call")).to_be_hidden()


async def start_agent(serve: Serve, page: Page, **changes: Any) -> TestClient[Any, Any]:
    client = await serve(questions_file=None, **changes)
    await make_queue(client, "general", wrap_up_seconds=60, offer_timeout_seconds=60)
    _, token = await make_agent(client, "ada")
    await sign_in(page, page_url(client), token)
    await go_available(page)
    return client


async def test_answer_shows_in_history_and_the_follow_up_is_asked(serve: Serve, page: Page) -> None:
    client = await start_agent(serve, page)
    await add_bank(client, [CARDS, CARDS_COUNT], [WAIVER, TRANSFER])
    customer_id = await make_named_customer(client, "C-1", "Ada Lovelace", 6000, "+12125550123")

    # First call: who and how they were recognised, value, a treatment with its reason and
    # the facts that made it apply, no history yet, the first question.
    await take_call(page, client, "pbx-1", "+12125550123")
    facts = page.locator("#customer-facts")
    await expect(facts).to_contain_text("Ada Lovelace")
    await expect(facts).to_contain_text("C-1")
    await expect(facts).to_contain_text("Net value$6,000.00")  # what the tier is earned on
    await expect(facts).to_contain_text("Lifetime value$6,000.00")
    await expect(facts).to_contain_text("+12125550123")
    await expect(facts.locator("dd.recognised")).to_have_text(
        "recognised by the calling number +12125550123"
    )
    treatment = page.locator("#treatment-list li[data-key=fee_waiver]")
    await expect(treatment).to_contain_text("Offer the fee waiver")
    await expect(treatment.locator(".reason")).to_have_text("Why: a valuable customer")
    await expect(treatment.locator(".chips li")).to_have_text(["tier gold"])
    await expect(page.locator("#treatment-list > li")).to_have_count(1)
    await expect(page.locator("#needs-empty")).to_be_visible()
    await expect(page.locator("#history-empty")).to_be_visible()
    await expect(page.locator("#question-text")).to_have_text(CARDS["text"])
    await page.get_by_label("Yes", exact=True).check()
    await page.fill("#notes", "asked about fees")
    await finish(page)

    # Second call from the same customer: the answer is in the history and the needs
    # profile, a second rule applies because of it, and the follow-up is asked.
    await take_call(page, client, "pbx-2", "+12125550123")
    rows = page.locator("#history-rows tr")
    await expect(rows).to_have_count(1)
    first = rows.nth(0)
    for text in ("phone", "ada", "completed", "asked about fees"):
        await expect(first).to_contain_text(text)
    await expect(first.locator("td.answer")).to_have_text(f"{CARDS['text']} yes")
    await expect(page.locator("#needs-list dt")).to_have_text([CARDS["text"]])
    await expect(page.locator("#needs-list dd")).to_contain_text("yes")
    transfer = page.locator("#treatment-list li[data-key=balance_transfer]")
    # The facts in words: the question as asked, the amount with its currency.
    await expect(transfer.locator(".chips li")).to_have_text(
        [f"{CARDS['text']} yes", "lifetime value 6,000.00 USD"]
    )
    await expect(page.locator("#question-text")).to_have_text(CARDS_COUNT["text"])
    answer = page.get_by_label("Answer (a number from 1 to 20)")
    await expect(answer).to_have_attribute("inputmode", "decimal")

    # A wrong answer comes back next to the question, announced and tied to the field;
    # what was typed stays.
    await answer.fill("lots")
    await page.fill("#notes", "second call")
    await page.click("#finish")
    error = page.locator("#question-error")
    await expect(error).to_contain_text(f"'{CARDS_COUNT['text']}' is answered with a number")
    await expect(error).to_have_attribute("role", "alert")
    await expect(answer).to_have_attribute("aria-describedby", "question-error")
    await expect(answer).to_have_attribute("aria-invalid", "true")
    await expect(answer).to_be_focused()
    await expect(answer).to_have_value("lots")
    await expect(page.locator("#notes")).to_have_value("second call")
    await expect(page.locator("#agent-state")).not_to_have_text("Available")
    await answer.fill("25")  # out of range: the server names the bound
    await page.click("#finish")
    await expect(error).to_have_text(
        f"25 is above 20, the largest answer to '{CARDS_COUNT['text']}'"
    )

    await answer.fill("2")
    await finish(page)
    history = await (await client.get(f"/api/customers/{customer_id}/history")).json()
    assert [i["notes"] for i in history["interactions"]] == ["second call", "asked about fees"]


async def test_choice_by_keyboard_skip_then_text_question(serve: Serve, page: Page) -> None:
    client = await start_agent(serve, page)
    await add_bank(client, [CHANNEL, FEES])
    customer_id = await make_named_customer(client, "C-2", "Grace Hopper", 2000, "+12125550124")

    await take_call(page, client, "pbx-1", "+12125550124")
    await expect(page.locator("#question-text")).to_have_text(CHANNEL["text"])
    radios = page.locator("#question-input input[type=radio]")
    await expect(radios).to_have_count(3)
    for choice in CHANNEL["choices"]:  # each radio is labelled with its choice
        await expect(page.get_by_label(choice, exact=True)).to_be_enabled()
    group = page.get_by_role("radiogroup", name=CHANNEL["text"])
    await expect(group).to_have_attribute("aria-describedby", "question-error")

    # Keyboard only, from the call's title: the choices, the skip box, outcome, notes.
    await expect(page.locator("#call-title")).to_be_focused()
    await page.keyboard.press("Tab")
    await expect(page.get_by_label("phone", exact=True)).to_be_focused()
    await page.keyboard.press("ArrowDown")
    await expect(page.get_by_label("email", exact=True)).to_be_checked()
    await page.keyboard.press("Tab")
    await expect(page.get_by_label("Skip this question")).to_be_focused()
    await page.keyboard.press("Space")
    await expect(page.get_by_label("email", exact=True)).to_be_disabled()
    await page.keyboard.press("Tab")
    await expect(page.locator("#outcome")).to_be_focused()
    await page.keyboard.press("Tab")
    await expect(page.locator("#notes")).to_be_focused()
    await page.keyboard.type("prefers not to say")
    await page.keyboard.press("Control+Enter")
    await expect(page.locator("#agent-state")).to_have_text("Available")

    await take_call(page, client, "pbx-2", "+12125550124")
    await expect(page.locator("#history-rows tr td.answer").nth(0)).to_have_text(
        f"{CHANNEL['text']} skipped"
    )
    await expect(page.locator("#question-text")).to_have_text(FEES["text"])
    await page.get_by_label("Answer", exact=True).fill("too high for what they are")
    await page.keyboard.press("Control+Enter")  # the wrap-up's keyboard shortcut
    await expect(page.locator("#agent-state")).to_have_text("Available")
    history = await (await client.get(f"/api/customers/{customer_id}/history")).json()
    assert history["interactions"][1]["notes"] == "prefers not to say"


async def test_withheld_and_new_callers(serve: Serve, page: Page) -> None:
    client = await start_agent(serve, page)
    await add_bank(client, [CHANNEL], [WAIVER])

    # A withheld number: no customer, so no question, history, needs or suggestions;
    # the notes still go with the wrap-up.
    await take_call(page, client, "pbx-1", "anonymous")
    await expect(page.locator("#call-title")).to_have_text("On call with Withheld number")
    await expect(page.locator("#call-meta")).to_contain_text("number withheld")
    await expect(page.locator("#customer-facts dd.recognised")).to_have_text(
        "the number was withheld and no customer number was typed"
    )
    await expect(page.locator("#customer-none")).to_be_visible()
    for hidden in ("#question", "#needs", "#treatments", "#history"):
        await expect(page.locator(hidden)).to_be_hidden()
    await page.fill("#notes", "would not give a name")
    await finish(page)

    # A number nobody has: a provisional record, asked the first question.
    await take_call(page, client, "pbx-2", "+12125550999")
    await expect(page.locator("#call-title")).to_have_text("On call with Caller +12125550999")
    await expect(page.locator("#customer-facts")).to_contain_text("provisional")
    await expect(page.locator("#customer-facts dd.recognised")).to_contain_text(
        "first call from +12125550999"
    )
    await expect(page.locator("#customer-none")).to_be_hidden()
    await expect(page.locator("#question-text")).to_have_text(CHANNEL["text"])
    await expect(page.locator("#treatments-empty")).to_be_visible()  # standard tier: no waiver
    await expect(page.locator("#history-empty")).to_be_visible()
    await finish(page)


async def test_older_contacts_page_in_newest_first(
    serve: Serve, page: Page, pool: asyncpg.Pool[Any]
) -> None:
    client = await start_agent(serve, page)
    customer_id = await make_named_customer(client, "C-3", "Alan Turing", 2000, "+12125550125")
    now = datetime.now(UTC)
    for n in range(1, 31):  # contact 30 is the newest
        started = now - timedelta(days=31 - n)
        await pool.execute(
            "INSERT INTO interactions (customer_id, started_at, ended_at, agent, outcome, notes)"
            " VALUES ($1, $2, $2, 'bob', 'completed', $3)",
            customer_id,
            started,
            f"old contact {n}",
        )
    await take_call(page, client, "pbx-1", "+12125550125")
    rows = page.locator("#history-rows tr")
    await expect(rows).to_have_count(20)  # the first page
    await expect(rows.nth(0)).to_contain_text("old contact 30")
    older = page.locator("#older")
    # An impatient double click asks for the next page once: the button waits for it.
    await older.evaluate("button => { button.click(); button.click(); }")
    await expect(rows).to_have_count(30)
    await expect(older).to_be_hidden()  # nothing older left
    notes = await page.locator("#history-rows tr td:nth-child(5)").all_text_contents()
    assert notes == [f"old contact {n}" for n in range(30, 0, -1)]


async def test_reconnect_on_a_call_shows_the_panel_again_and_keeps_the_draft(
    serve: Serve, page: Page
) -> None:
    client = await start_agent(serve, page, agent_grace_seconds=30)
    await add_bank(client, [CARDS])
    await make_named_customer(client, "C-4", "Ada Lovelace", 6000, "+12125550126")
    await take_call(page, client, "pbx-1", "+12125550126")
    await page.get_by_label("No", exact=True).check()
    await page.fill("#notes", "typed before the drop")

    port = client.server.port
    await client.close()
    await expect(page.locator("#conn")).to_have_attribute("data-conn", "reconnecting")
    await serve(port=port, questions_file=None, agent_grace_seconds=30)
    await expect(page.locator("#conn")).to_have_attribute("data-conn", "connected", timeout=20_000)
    await expect(page.locator("#question-text")).to_have_text(CARDS["text"])
    await expect(page.locator("#notes")).to_have_value("typed before the drop")
    await expect(page.get_by_label("No", exact=True)).to_be_checked()
    await expect(page.locator("#history-empty")).to_be_visible()
    await page.click("#finish")
    await expect(page.locator("#agent-state")).to_have_text("Available")


async def test_a_wrap_up_cut_short_by_its_timer_is_kept_and_saved_later(
    serve: Serve, page: Page, pool: asyncpg.Pool[Any]
) -> None:
    client = await serve(questions_file=None)
    await make_queue(client, "general", wrap_up_seconds=1, offer_timeout_seconds=60)
    _, token = await make_agent(client, "ada")
    await add_bank(client, [CARDS, CARDS_COUNT])
    await make_named_customer(client, "C-5", "Ada Lovelace", 6000, "+12125550150")
    grace = await make_named_customer(client, "C-6", "Grace Hopper", 2000, "+12125550160")
    resp = await client.post(
        f"/api/customers/{grace}/answers", json={"question_key": "cards_elsewhere", "value": True}
    )
    assert resp.status == 201, await resp.text()
    await sign_in(page, page_url(client), token)
    await go_available(page)

    # The queue's one-second wrap-up ends before the agent answered: the form lives on as
    # a card, with the question shown on the call and the notes typed so far.
    ada_call = await take_call(page, client, "pbx-1", "+12125550150")
    await page.fill("#notes", "wants a callback on Monday")
    await page.click("#end-call")
    await expect(page.locator("#agent-state")).to_have_text("Available")
    await expect(page.locator("#call")).to_be_hidden()
    card = page.locator(f"form.late[data-call-id='{ada_call}']")
    await expect(card.get_by_role("heading")).to_have_text("Finish the wrap-up of Ada Lovelace")
    await expect(card.get_by_label("Notes")).to_have_value("wants a callback on Monday")
    await expect(card.locator("legend")).to_contain_text(CARDS["text"])
    await expect(page.locator("#unfinished-link")).to_have_text("1 wrap-up to finish")

    # A call rings meanwhile: the offer shows, and so does the card; saving it leaves the
    # offer and the agent's state alone.
    await enqueue(client, "pbx-2", ani="+12125550160")
    await expect(page.locator("#ring-name")).to_have_text("Grace Hopper")
    await expect(card).to_be_visible()
    await card.get_by_label("Yes", exact=True).check()
    await card.get_by_role("button", name="Save this wrap-up").click()
    await expect(card).to_have_count(0)
    await expect(page.locator("#unfinished-link")).to_be_hidden()
    await expect(page.locator("#ring")).to_be_visible()
    await expect(page.locator("#agent-state")).to_have_text("Ringing")
    stored = await pool.fetchrow(
        "SELECT i.notes, a.value, c.wrapped_up_at IS NOT NULL AS done FROM calls c"
        " JOIN interactions i ON i.id = c.interaction_id"
        " JOIN answers a ON a.call_id = c.id WHERE c.id = $1",
        ada_call,
    )
    assert stored is not None
    assert stored["notes"] == "wants a callback on Monday"
    assert stored["value"] == "yes" and stored["done"]  # the pool decodes jsonb

    # The next call runs out too; its card refuses a wrong answer next to the field, and
    # survives a reload of the tab.
    await page.click("#accept")
    await expect(page.locator("#question-text")).to_have_text(CARDS_COUNT["text"])
    grace_call = int(await page.locator("#call").get_attribute("data-call-id") or 0)
    await page.fill("#notes", "typed on the call")
    await page.click("#end-call")
    card = page.locator(f"form.late[data-call-id='{grace_call}']")
    answer = card.get_by_label("Answer (a number from 1 to 20)")
    await answer.fill("lots")
    await answer.press("Control+Enter")  # the card's own shortcut
    await expect(card.get_by_role("alert").first).to_contain_text("answered with a number")
    await expect(answer).to_have_attribute("aria-invalid", "true")
    await expect(answer).to_be_focused()
    await page.reload()
    await expect(page.locator("#conn")).to_have_attribute("data-conn", "connected")
    await expect(answer).to_have_value("lots")
    await expect(card.get_by_label("Notes")).to_have_value("typed on the call")

    # Another tab of the agent saves it first: this one's save is taken as done ("already
    # wrapped up"), and nothing is stored twice.
    other = await Panel.open(client, token)
    try:
        await other.send(
            type="wrap_up", call_id=grace_call, notes="from the other tab", available=False, ref=1
        )
        assert (await other.until(lambda m: m.get("ref") == 1))["type"] == "ack"
    finally:
        await other.close()
    await answer.fill("3")
    await card.get_by_role("button", name="Save this wrap-up").click()
    await expect(card).to_have_count(0)
    await expect(page.locator("#notice")).to_be_hidden()
    notes = await pool.fetchval(
        "SELECT i.notes FROM calls c JOIN interactions i ON i.id = c.interaction_id"
        " WHERE c.id = $1",
        grace_call,
    )
    assert notes == "from the other tab"
    assert await pool.fetchval("SELECT count(*) FROM answers WHERE call_id = $1", grace_call) == 0
