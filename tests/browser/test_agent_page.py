"""The agent page in headless Chromium against a real service: sign-in, offers, reconnects."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import asyncpg
from playwright.async_api import Page, expect

from tests.browser.conftest import Serve
from tests.browser.page_helpers import (
    SilentProxy,
    go_available,
    make_named_customer,
    page_url,
    sign_in,
)
from tests.integration.queue_helpers import (
    agent_state,
    end_call,
    enqueue,
    eventually,
    make_agent,
    make_queue,
)

TOKEN_KEY = "callcenter.agent.token"


async def test_page_is_served_with_its_files_and_a_strict_policy(serve: Serve) -> None:
    client = await serve()
    resp = await client.get("/agent")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
    html = await resp.text()
    for asset, kind in (("agent.js", "javascript"), ("agent.css", "text/css")):
        assert f"/agent/static/{asset}" in html
        got = await client.get(f"/agent/static/{asset}")
        assert got.status == 200 and kind in got.content_type
    assert "http://" not in html and "https://" not in html  # nothing from elsewhere
    missing = await client.get("/agent/static/nothing.js")
    assert missing.status == 404
    assert (await missing.json())["status"] == 404


async def test_session_check_answers_who_the_token_belongs_to(serve: Serve) -> None:
    client = await serve()
    _, token = await make_agent(client, "ada")
    ok = await client.get("/agent/session", headers={"Authorization": f"Bearer {token}"})
    assert ok.status == 200 and (await ok.json())["name"] == "ada"
    bad = await client.get("/agent/session", headers={"Authorization": "Bearer nope"})
    assert bad.status == 401 and "unknown agent token" in (await bad.json())["detail"]
    none = await client.get("/agent/session")
    assert none.status == 401
    document = await (await client.get("/openapi.json")).json()
    assert "401" in document["paths"]["/agent/session"]["get"]["responses"]


async def test_bad_token_is_refused_and_stays_signed_out(serve: Serve, page: Page) -> None:
    client = await serve()
    await page.goto(page_url(client))
    await expect(page.locator("#conn")).to_have_attribute("data-conn", "signed-out")
    await page.click("#sign-in-form button[type=submit]")
    await expect(page.locator("#sign-in-error")).to_have_text("Paste your agent token first.")
    await page.fill("#token", "not-a-token")
    await page.press("#token", "Enter")
    await expect(page.locator("#sign-in-error")).to_contain_text("Token not accepted")
    await expect(page.locator("#who")).to_be_hidden()
    assert await page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')") is None

    # A stored token the socket refuses (401 on the handshake) also ends at the sign-in form.
    await page.evaluate(f"sessionStorage.setItem('{TOKEN_KEY}', 'revoked-token')")
    await page.reload()
    await expect(page.locator("#sign-in-error")).to_contain_text("Token not accepted")
    await expect(page.locator("#conn")).to_have_attribute("data-conn", "signed-out")
    assert await page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')") is None


async def test_offer_rings_with_who_and_why_then_accept(serve: Serve, page: Page) -> None:
    client = await serve()
    customer_id = await make_named_customer(client, "C-7", "Ada Lovelace", 6000, "+12125550123")
    agent_id, token = await make_agent(client, "ada")
    await sign_in(page, page_url(client), token)
    await expect(page.locator("#agent-name")).to_have_text("ada")
    await expect(page.locator("#agent-state")).to_have_text("Offline")
    await go_available(page)
    await expect(page.locator("#idle-text")).to_have_text("Waiting for a call…")

    call_id = (await enqueue(client, "pbx-1", ani="(212) 555-0123"))["call"]["id"]
    ring = page.locator("#ring")
    await expect(ring).to_be_visible()
    await expect(page.locator("#ring-name")).to_have_text("Ada Lovelace")
    await expect(page.locator("#ring-tier")).to_have_text("gold")
    await expect(page.locator("#ring-reason")).to_have_text(
        "gold customer: served as if they had called 60 s earlier"
    )
    await expect(page.locator("#ring-line")).to_contain_text("customer C-7")
    await expect(page.locator("#ring-expires")).to_have_text(re.compile(r"answer within 0:1\d"))
    await expect(page.locator("#ring-waited")).to_have_text(re.compile(r"waited 0:0[1-9]"))
    await expect(page.locator("#live")).to_contain_text("Incoming call: Ada Lovelace, gold")
    await expect(page.locator("#agent-state")).to_have_text("Ringing")

    await page.click("#accept")
    await expect(page.locator("#call")).to_be_visible()
    await expect(page.locator("#call-title")).to_have_text("On call with Ada Lovelace")
    await expect(page.locator("#ring")).to_be_hidden()
    await expect(page.locator("#agent-state")).to_have_text("On call")
    await expect(page.locator("#customer-facts")).to_contain_text("C-7")
    call = await (await client.get(f"/api/calls/{call_id}")).json()
    assert call["state"] == "connected" and call["agent_id"] == agent_id
    assert call["customer"]["id"] == customer_id


async def test_reject_by_keyboard_then_available_again(
    serve: Serve, page: Page, pool: asyncpg.Pool[Any]
) -> None:
    client = await serve()
    _, token = await make_agent(client, "ada")
    await sign_in(page, page_url(client), token)
    await go_available(page)
    call_id = (await enqueue(client, "pbx-r", ani="+12125550199"))["call"]["id"]
    await expect(page.locator("#ring")).to_be_visible()
    await expect(page.locator("#ring-name")).to_have_text("Caller +12125550199")
    offer_id = await page.locator("#ring").get_attribute("data-offer-id")

    await page.keyboard.press("r")
    await expect(page.locator("#ring")).to_be_hidden()
    await expect(page.locator("#agent-state")).to_have_text("Not responding")
    await expect(page.locator("#idle-text")).to_contain_text("press Available")
    result = await pool.fetchval("SELECT result FROM call_offers WHERE id = $1", int(offer_id or 0))
    assert result == "rejected"

    # Available again: the same call (it kept its place) rings again at once, as a new offer.
    await page.click("#go-available")
    await expect(page.locator("#agent-state")).to_have_text("Ringing")
    await expect(page.locator("#ring")).to_be_visible()
    assert await page.locator("#ring").get_attribute("data-offer-id") != offer_id
    offered = await pool.fetchval(
        "SELECT offered_to IS NOT NULL FROM waiting_calls WHERE call_id = $1", call_id
    )
    assert offered is True


async def test_keyboard_only_sign_in_and_accept_with_visible_focus(
    serve: Serve, page: Page
) -> None:
    client = await serve()
    await make_named_customer(client, "C-8", "Grace Hopper", 30000, "+12125550188")
    _, token = await make_agent(client, "grace")
    await page.goto(page_url(client))
    await page.keyboard.press("Tab")  # the skip link comes first
    assert await page.evaluate("document.activeElement.className") == "skip-link"
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "token"
    await page.keyboard.type(token)
    await page.keyboard.press("Enter")
    await expect(page.locator("#conn")).to_have_attribute("data-conn", "connected")
    await expect(page.locator("#go-available")).to_be_focused()
    outline = await page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"  # the focused control is visibly marked
    await page.keyboard.press("Enter")
    await expect(page.locator("#agent-state")).to_have_text("Available")

    await enqueue(client, "pbx-k", ani="+12125550188")
    await expect(page.locator("#ring")).to_be_visible()
    await expect(page.locator("#accept")).to_be_focused()  # ringing moves focus to Accept
    assert await page.locator("#ring").get_attribute("aria-labelledby") == "ring-title"
    await page.keyboard.press("a")
    await expect(page.locator("#call-title")).to_have_text("On call with Grace Hopper")
    await expect(page.locator("#call-title")).to_be_focused()


async def test_end_call_then_finish_returns_to_available(serve: Serve, page: Page) -> None:
    client = await serve()
    await make_queue(client, "general", wrap_up_seconds=60)
    customer_id = await make_named_customer(client, "C-9", "Alan Turing", 2000, "+12125550177")
    _, token = await make_agent(client, "ada")
    await sign_in(page, page_url(client), token)
    await go_available(page)
    call_id = (await enqueue(client, "pbx-e", ani="+12125550177"))["call"]["id"]
    await page.click("#accept")
    await expect(page.locator("#call-title")).to_have_text("On call with Alan Turing")

    await page.fill("#notes", "asked about fees")
    await page.click("#end-call")
    await expect(page.locator("#agent-state")).to_have_text("Wrap-up")
    await expect(page.locator("#call-title")).to_have_text("Wrap-up: Alan Turing")
    await expect(page.locator("#end-call")).to_be_hidden()
    await expect(page.locator("#notes")).to_have_value("asked about fees")  # typing survives
    await page.reload()  # ... a reload of the tab too
    await expect(page.locator("#call-title")).to_have_text("Wrap-up: Alan Turing")
    await expect(page.locator("#notes")).to_have_value("asked about fees")
    call = await (await client.get(f"/api/calls/{call_id}")).json()
    assert call["state"] == "completed"

    await page.click("#finish")
    await expect(page.locator("#agent-state")).to_have_text("Available")
    await expect(page.locator("#call")).to_be_hidden()
    history = await (await client.get(f"/api/customers/{customer_id}/history")).json()
    assert history["interactions"][0]["outcome"] == "completed"
    assert history["interactions"][0]["agent"] == "ada"


async def test_finish_while_a_caller_waits_rings_that_call_at_once(
    serve: Serve, page: Page, tmp_path: Path
) -> None:
    """The wrap-up that frees the agent offers the call waiting in the same step (issue
    21): Finish goes from the wrap-up straight to the next caller's ring."""
    client = await serve()
    await make_queue(client, "general", wrap_up_seconds=60, offer_timeout_seconds=60)
    await make_named_customer(client, "C-9", "Alan Turing", 2000, "+12125550177")
    await make_named_customer(client, "C-7", "Ada Lovelace", 6000, "+12125550123")
    _, token = await make_agent(client, "ada")
    await sign_in(page, page_url(client), token)
    await go_available(page)
    await enqueue(client, "pbx-first", ani="+12125550177")
    await page.click("#accept")
    await expect(page.locator("#call-title")).to_have_text("On call with Alan Turing")
    waiting = (await enqueue(client, "pbx-next", ani="+12125550123"))["call"]
    assert waiting["offered_to"] is None  # ada is on a call: it waits

    await page.fill("#notes", "asked about fees")
    await page.click("#finish")
    await expect(page.locator("#ring")).to_be_visible()
    await expect(page.locator("#ring-name")).to_have_text("Ada Lovelace")
    await expect(page.locator("#agent-state")).to_have_text("Ringing")
    await expect(page.locator("#call")).to_be_hidden()
    await page.screenshot(path=str(tmp_path / "finish-rings-the-next-call.png"))
    await page.click("#accept")
    await expect(page.locator("#call")).to_have_attribute("data-call-id", str(waiting["id"]))
    await expect(page.locator("#call-title")).to_have_text("On call with Ada Lovelace")
    await expect(page.locator("#notes")).to_have_value("")  # the last call's notes went


async def test_server_restart_page_reconnects_and_shows_the_same_offer(
    serve: Serve, page: Page
) -> None:
    # A long grace period and offer timeout: the offer must outlive the restart.
    client = await serve(agent_grace_seconds=30)
    await make_queue(client, "general", offer_timeout_seconds=60)
    await make_named_customer(client, "C-5", "Ada Lovelace", 30000, "+12125550155")
    _, token = await make_agent(client, "ada")
    await sign_in(page, page_url(client), token)
    await go_available(page)
    await enqueue(client, "pbx-s", ani="+12125550155")
    await expect(page.locator("#ring")).to_be_visible()
    offer_id = await page.locator("#ring").get_attribute("data-offer-id")

    port = client.server.port
    await client.close()  # the service goes away: its sockets close with 1001
    conn = page.locator("#conn")
    await expect(conn).to_have_attribute("data-conn", "reconnecting")
    await expect(conn).to_have_text(re.compile(r"Reconnecting in \d+ s"))
    await expect(page.locator("#reconnect-now")).to_be_visible()
    await expect(page.locator("#stale")).to_contain_text("Connection to the service lost")

    again = await serve(port=port, agent_grace_seconds=30)
    await expect(conn).to_have_attribute("data-conn", "connected", timeout=20_000)
    await expect(page.locator("#ring")).to_have_attribute("data-offer-id", offer_id or "")
    await expect(page.locator("#stale")).to_be_hidden()
    await expect(page.locator("#ring-name")).to_have_text("Ada Lovelace")
    await page.click("#accept")
    await expect(page.locator("#call-title")).to_have_text("On call with Ada Lovelace")
    assert again.server.port == port


async def test_a_silent_connection_is_noticed_and_replaced(serve: Serve, page: Page) -> None:
    client = await serve(agent_grace_seconds=30)
    await make_queue(client, "general", offer_timeout_seconds=60)
    _, token = await make_agent(client, "ada")
    proxy = await SilentProxy(client.server.port).start()
    try:
        # Ping every 0.3 s, so silence is noticed within a second.
        await sign_in(page, proxy.url("/agent?ping=0.3"), token)
        await go_available(page)
        await enqueue(client, "pbx-q", ani="+12125550144")
        await expect(page.locator("#ring")).to_be_visible()
        offer_id = await page.locator("#ring").get_attribute("data-offer-id")
        assert len(proxy.websocket_links()) == 1

        proxy.freeze()  # the old path goes dead without closing

        async def replaced() -> bool:
            return len(proxy.websocket_links()) >= 2

        await eventually(replaced, timeout=5)
        await expect(page.locator("#conn")).to_have_attribute("data-conn", "connected")
        await expect(page.locator("#ring")).to_have_attribute("data-offer-id", offer_id or "")
        await page.click("#accept")
        await expect(page.locator("#agent-state")).to_have_text("On call")
    finally:
        await proxy.close()


async def test_connection_state_reload_and_sign_out(
    serve: Serve, page: Page, pool: asyncpg.Pool[Any]
) -> None:
    client = await serve()
    agent_id, token = await make_agent(client, "ada")
    await page.goto(page_url(client))
    await expect(page.locator("#conn")).to_have_text("Signed out")
    await sign_in(page, page_url(client), token)
    await expect(page.locator("#conn")).to_have_text("Connected")
    await go_available(page)

    # A reload keeps the session (this tab only) and shows the server's state again.
    await page.reload()
    await expect(page.locator("#conn")).to_have_text("Connected")
    await expect(page.locator("#agent-state")).to_have_text("Available")
    await expect(page.locator("#sign-in")).to_be_hidden()

    sound = page.locator("#sound")
    await expect(sound).to_have_attribute("aria-pressed", "false")  # silent unless asked
    await sound.click()
    await expect(sound).to_have_attribute("aria-pressed", "true")
    await expect(sound).to_have_text("Sound on")

    await page.click("#sign-out")
    await expect(page.locator("#conn")).to_have_text("Signed out")
    await expect(page.locator("#sign-in")).to_be_visible()
    await expect(page.locator("#token")).to_be_focused()
    assert await page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')") is None

    async def offline() -> bool:
        state = await pool.fetchval("SELECT state FROM agents WHERE id = $1", agent_id)
        return bool(state == "offline")

    await eventually(offline, timeout=5)  # signing out ends the shift: no more offers


async def test_signing_out_in_wrap_up_ends_the_shift(
    serve: Serve, page: Page, pool: asyncpg.Pool[Any]
) -> None:
    """Signing out in a call's wrap-up takes the agent offline, as from available: else
    the wrap-up's clock made the signed-out agent available, and calls were offered to
    its closed panel until the grace period ran out (each caller held for the offer's
    timeout)."""
    client = await serve(agent_grace_seconds=30.0)
    await make_queue(client, "general", wrap_up_seconds=300)
    agent_id, token = await make_agent(client, "ada")
    await sign_in(page, page_url(client), token)
    await go_available(page)
    await enqueue(client, "pbx-w")
    await page.click("#accept")
    await page.click("#end-call")
    await expect(page.locator("#agent-state")).to_have_text("Wrap-up")
    await page.click("#sign-out")
    await expect(page.locator("#conn")).to_have_text("Signed out")

    async def offline() -> bool:
        return await agent_state(pool, agent_id) == "offline"

    await eventually(offline, timeout=5)


async def test_signing_out_on_a_call_ends_the_shift_when_the_call_is_over(
    serve: Serve, page: Page, pool: asyncpg.Pool[Any]
) -> None:
    """Signing out on a call leaves the agent on it (the caller is on the line); when the
    call ends the agent goes offline, not to a wrap-up whose clock would make it
    available to a closed panel."""
    client = await serve(agent_grace_seconds=30.0)
    await make_queue(client, "general", wrap_up_seconds=0)
    agent_id, token = await make_agent(client, "ada")
    await sign_in(page, page_url(client), token)
    await go_available(page)
    call = await enqueue(client, "pbx-s")
    await page.click("#accept")
    await expect(page.locator("#agent-state")).to_have_text("On call")
    await page.click("#sign-out")
    await expect(page.locator("#conn")).to_have_text("Signed out")

    async def marked() -> bool:
        return bool(
            await pool.fetchval("SELECT offline_after_call FROM agents WHERE id = $1", agent_id)
        )

    await eventually(marked, timeout=5)
    await end_call(client, call["call"]["id"])
    assert await agent_state(pool, agent_id) == "offline"


async def test_caller_data_is_shown_as_text_never_as_markup(serve: Serve, page: Page) -> None:
    client = await serve()
    name = '<img src=x onerror="window.__pwned=1">Eve'
    await make_named_customer(client, "C-666", name, 100, "+12125550166")
    _, token = await make_agent(client, "ada")
    await sign_in(page, page_url(client), token)
    await go_available(page)
    await enqueue(client, "pbx-x", ani="+12125550166")
    await expect(page.locator("#ring-name")).to_have_text(name)
    await page.click("#accept")
    await expect(page.locator("#call-title")).to_have_text(f"On call with {name}")
    assert await page.locator("img").count() == 0
    assert await page.evaluate("window.__pwned === undefined")
