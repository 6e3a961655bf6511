"""The supervisor dashboard in headless Chromium against a real service: sign-in, live
calls, service level, a bump that reorders the list, reconnecting after a drop."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from playwright.async_api import Page, expect
from pydantic import SecretStr

from callcenter import app_keys
from tests.browser.conftest import Serve
from tests.browser.page_helpers import make_named_customer, page_url
from tests.conftest import ADMIN
from tests.integration.dashboard_helpers import call as db_call
from tests.integration.dashboard_helpers import utcnow
from tests.integration.queue_helpers import Panel, enqueue, make_agent
from tests.integration.telephony_fakes import GENERIC_SECRET, post_generic

#: Where the screenshots go (look at them: the image viewer shows PNGs).
SHOTS = Path(os.environ.get("DASHBOARD_SHOTS", "/tmp/pt-dash/shots"))


async def _supervisor(client: TestClient[Any, Any], name: str = "sam") -> str:
    made = await client.post(
        "/api/people", json={"name": name, "role": "supervisor"}, headers=ADMIN
    )
    assert made.status == 201, await made.text()
    password: str = (await made.json())["password"]
    return password


async def _sign_in(page: Page, client: TestClient[Any, Any], name: str, password: str) -> None:
    await page.goto(page_url(client, "/dashboard?ping=1"))
    await page.fill("#name", name)
    await page.fill("#password", password)
    await page.click("#sign-in-form button[type=submit]")
    await expect(page.locator("#conn")).to_have_attribute("data-conn", "connected")


def _waiting_rows(page: Page) -> Any:
    return page.locator("#waiting tbody tr")


async def test_page_and_files_are_served_under_a_strict_policy(serve: Serve) -> None:
    client = await serve()
    resp = await client.get("/dashboard", headers={"Authorization": ""})
    assert resp.status == 200 and resp.content_type == "text/html"
    assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
    html = await resp.text()
    assert "http://" not in html and "https://" not in html
    for name, kind in (
        ("dashboard.js", "javascript"),
        ("dashboard.css", "text/css"),
        ("uPlot.iife.min.js", "javascript"),
        ("uPlot.min.css", "text/css"),
    ):
        assert f"/dashboard/static/{name}" in html
        got = await client.get(f"/dashboard/static/{name}")
        assert got.status == 200 and kind in got.content_type, name
    assert (await client.get("/dashboard/static/uPlot.LICENSE")).status == 404
    assert (await client.get("/dashboard/static/..%2Fagent_page.py")).status == 404


async def test_wrong_password_is_refused(serve: Serve, page: Page) -> None:
    client = await serve()
    await _supervisor(client)
    await page.goto(page_url(client, "/dashboard"))
    await page.fill("#name", "sam")
    await page.fill("#password", "not-the-password")
    await page.click("#sign-in-form button[type=submit]")
    await expect(page.locator("#sign-in-error")).to_have_text("Name or password not accepted.")
    await expect(page.locator("#board")).to_be_hidden()


async def test_a_supervisor_sees_calls_arrive_be_answered_and_abandoned(
    serve: Serve, page: Page
) -> None:
    client = await serve()
    password = await _supervisor(client)
    await make_named_customer(client, "C-1", "Ada Lovelace", 8000, "+12125550101")
    _, token = await make_agent(client, "ada")
    await _sign_in(page, client, "sam", password)
    await expect(page.locator("#who-name")).to_have_text("supervisor:sam")
    general = page.locator('#queues tr[data-queue="general"]')
    await expect(general.locator('[data-field="sl"]')).to_have_text("– · –")

    # A call arrives.
    await enqueue(client, "pbx-1", ani="+12125550101")
    await expect(_waiting_rows(page)).to_have_count(1)
    row = _waiting_rows(page).first
    await expect(row.locator('[data-field="customer"]')).to_have_text("Ada Lovelace (C-1)")
    await expect(row.locator('[data-field="why"]')).to_contain_text("served as if they had called")
    await expect(general.locator('[data-field="waiting"]')).to_have_text("1")

    # The agent answers it: the service level shows it.
    panel = await Panel.open(client, token)
    await panel.send(type="available")
    offer = await panel.until(lambda m: m["type"] == "offer")
    await panel.send(type="accept", offer_id=offer["offer_id"])
    await panel.state("on_call")
    await expect(_waiting_rows(page)).to_have_count(0)
    await expect(general.locator('[data-field="sl"]')).to_have_text("100 % · 100 %")
    agent_row = page.locator("#agents tbody tr", has_text="ada")
    await expect(agent_row).to_have_attribute("data-state", "on_call")
    await expect(agent_row.locator('[data-field="handled"]')).to_have_text("1")

    # Another caller hangs up waiting: the abandons show it.
    lost = (await enqueue(client, "pbx-2"))["call"]["id"]
    await expect(_waiting_rows(page)).to_have_count(1)
    resp = await client.post(f"/api/calls/{lost}/end", json={"outcome": "abandoned"})
    assert resp.status == 200
    await expect(general.locator('[data-field="abandoned"]')).to_have_text("1 (50 %) · 1")
    await panel.close()


async def test_bump_reorders_the_list_and_says_who(serve: Serve, page: Page) -> None:
    client = await serve()
    password = await _supervisor(client)
    await _sign_in(page, client, "sam", password)
    await enqueue(client, "first")
    second = (await enqueue(client, "second"))["call"]["id"]
    await expect(_waiting_rows(page)).to_have_count(2)
    await expect(_waiting_rows(page).nth(1)).to_have_attribute("data-call-id", str(second))

    await _waiting_rows(page).nth(1).get_by_role("button", name="Act…").click()
    await expect(page.locator("#act")).to_be_visible()
    await page.fill("#bump-seconds", "9999")
    await page.click("#bump-form button[type=submit]")
    await expect(page.locator("#act-error")).to_contain_text("credit must be between")
    await page.fill("#bump-seconds", "60")
    await page.click("#bump-form button[type=submit]")
    await expect(_waiting_rows(page).first).to_have_attribute("data-call-id", str(second))
    await expect(_waiting_rows(page).first.locator('[data-field="why"]')).to_contain_text(
        "(by supervisor:sam)"
    )
    await expect(page.locator("#notice")).to_have_text(f"Call {second} bumped")


async def test_the_page_reconnects_after_the_socket_drops(serve: Serve, page: Page) -> None:
    client = await serve()
    password = await _supervisor(client)
    await _sign_in(page, client, "sam", password)
    hub = client.app[app_keys.DASHBOARD]
    assert len(hub.sockets) == 1
    for sock in list(hub.sockets):
        await sock.ws.close(code=1012, message=b"restarting")
    await expect(page.locator("#conn")).to_have_attribute("data-conn", "reconnecting")
    await expect(page.locator("#stale")).to_be_visible()
    await expect(page.locator("#conn")).to_have_attribute("data-conn", "connected", timeout=10_000)
    # What happens after the reconnect shows up.
    await enqueue(client, "after")
    await expect(_waiting_rows(page)).to_have_count(1)


async def test_screenshots_at_laptop_and_wall_sizes(serve: Serve, page: Page) -> None:
    client = await serve()
    name = "sam"
    password = await _supervisor(client, name)
    for i, (number, who, value) in enumerate(
        (("P-1", "Grace Hopper", 9000), ("G-1", "Alan Turing", 3000), ("S-1", "Joan Clarke", 10))
    ):
        await make_named_customer(client, number, who, value, f"+1212555020{i}")
    _, token = await make_agent(client, "ada")
    await make_agent(client, "bob")
    panel = await Panel.open(client, token)
    await panel.send(type="available")
    await enqueue(client, "pbx-a", ani="+12125550200")
    offer = await panel.until(lambda m: m["type"] == "offer")
    await panel.send(type="accept", offer_id=offer["offer_id"])
    await panel.state("on_call")
    for i, ani in enumerate(("+12125550201", "+12125550202", None, "+12125550200")):
        await enqueue(client, f"pbx-w{i}", **({"ani": ani} if ani else {}))
    await asyncio.to_thread(SHOTS.mkdir, parents=True, exist_ok=True)
    for width, height in ((1280, 800), (1920, 1080)):
        await page.set_viewport_size({"width": width, "height": height})
        await _sign_in(page, client, name, password)
        await expect(_waiting_rows(page)).to_have_count(4)
        # Nothing spills sideways at this size.
        overflow = await page.evaluate("document.documentElement.scrollWidth - innerWidth")
        assert overflow <= 0, (width, overflow)
        await page.screenshot(path=str(SHOTS / f"dashboard-{width}x{height}.png"), full_page=True)
        # Signing out ends the session; the next size signs in as another supervisor.
        await page.click("#sign-out")
        await expect(page.locator("#conn")).to_have_attribute("data-conn", "signed-out")
        name = f"sam{width}"
        password = await _supervisor(client, name)
    await panel.close()


async def test_move_a_call_and_force_an_agent_offline_from_the_page(
    serve: Serve, page: Page
) -> None:
    client = await serve()
    password = await _supervisor(client)
    resp = await client.put("/api/queues/sales", json={})
    assert resp.status == 201
    _, token = await make_agent(client, "ada", queues=["sales"])
    panel = await Panel.open(client, token)
    await _sign_in(page, client, "sam", password)
    await panel.send(type="available")
    ada = page.locator("#agents tbody tr", has_text="ada")
    await expect(ada).to_have_attribute("data-state", "available")

    await ada.get_by_role("button", name="Force offline").click()
    await expect(ada).to_have_attribute("data-state", "offline")
    await expect(page.locator("#notice")).to_have_text("Forced ada offline")
    await panel.state("offline")

    call = (await enqueue(client, "pbx-move"))["call"]
    await expect(_waiting_rows(page)).to_have_count(1)
    await _waiting_rows(page).first.get_by_role("button", name="Act…").click()
    await page.select_option("#move-queue", "general")
    await page.click("#move-form button[type=submit]")
    await expect(page.locator("#act-error")).to_contain_text("already waits in 'general'")
    await page.select_option("#move-queue", "sales")
    await page.click("#move-form button[type=submit]")
    await expect(_waiting_rows(page).first.locator('[data-field="queue"]')).to_have_text("sales")
    moved = await (await client.get(f"/api/calls/{call['id']}")).json()
    assert moved["queue"] == "sales" and moved["service_key"] == call["service_key"]
    await panel.close()


async def test_a_calls_timeline_opens_beside_the_board_and_says_who(
    serve: Serve, page: Page
) -> None:
    client = await serve()
    password = await _supervisor(client)
    await make_named_customer(client, "C-7", "Grace Hopper", 9000, "+12125550107")
    resp = await client.put("/api/queues/sales", json={})
    assert resp.status == 201
    _, token = await make_agent(client, "ada", queues=["sales"])
    await page.set_viewport_size({"width": 1280, "height": 800})
    await _sign_in(page, client, "sam", password)
    call = (await enqueue(client, "pbx-story", ani="+12125550107"))["call"]
    await expect(_waiting_rows(page)).to_have_count(1)
    row = _waiting_rows(page).first
    await row.get_by_role("button", name="Act…").click()
    await page.fill("#bump-seconds", "45")
    await page.click("#bump-form button[type=submit]")
    await expect(page.locator("#notice")).to_have_text(f"Call {call['id']} bumped")

    # Clicking the waiting call shows its story, with who bumped it.
    await row.locator('[data-field="customer"]').click()
    side = page.locator("#timeline")
    await expect(side).to_be_visible()
    events = side.locator("#timeline-events li")
    await expect(events).to_have_count(2)
    await expect(events.nth(0)).to_contain_text("arrived in general as")
    await expect(events.nth(1)).to_contain_text("bumped to 45 s of credit by supervisor:sam")
    await expect(side.locator("#timeline-call")).to_contain_text("Grace Hopper (C-7)")

    # It follows the call live: moved, then answered by the agent.
    await page.select_option("#move-queue", "sales")
    await page.click("#move-form button[type=submit]")
    await expect(events.nth(2)).to_contain_text("moved from general to sales by supervisor:sam")
    panel = await Panel.open(client, token)
    await panel.send(type="available")
    offer = await panel.until(lambda m: m["type"] == "offer")
    await panel.send(type="accept", offer_id=offer["offer_id"])
    await panel.state("on_call")
    await expect(side.locator("li[data-kind=accepted]")).to_contain_text("accepted by agent ada")
    await asyncio.to_thread(SHOTS.mkdir, parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / "dashboard-timeline-1280x800.png"))

    # Closed, then opened again from the agent's current call.
    await page.click("#timeline-close")
    await expect(side).to_be_hidden()
    ada = page.locator("#agents tbody tr", has_text="ada")
    await ada.get_by_role("button", name=f"#{call['id']}").click()
    await expect(side).to_be_visible()
    await expect(side.locator("#timeline-summary")).to_contain_text("connected · sales")
    await panel.close()


async def test_the_chart_shows_the_hour_from_the_database_and_a_lone_value(
    serve: Serve, page: Page
) -> None:
    client = await serve()
    password = await _supervisor(client)
    agent_id, _ = await make_agent(client, "ada")
    now = utcnow()
    pool = client.app[app_keys.POOL]
    async with pool.acquire() as conn:
        # Calls of the last hour, before this service started: they are on the chart.
        # One answer, 12 s ago: the service level has a value at one or two 10 s
        # points only, which a line alone would not show.
        for i, (arrived, answered) in enumerate(((15, 12),)):
            await db_call(
                conn, f"old-{i}", tier="standard", customer_id=None, enqueued=arrived,
                connected=answered, ended=answered - 60, state="completed",
                agent_id=agent_id, now=now,
            )  # fmt: skip
        for i, arrived in enumerate((2000, 1200, 600)):
            await db_call(
                conn, f"wait-{i}", tier="standard", customer_id=None, enqueued=arrived,
                state="waiting", now=now,
            )  # fmt: skip
    await page.set_viewport_size({"width": 1280, "height": 800})
    await _sign_in(page, client, "sam", password)
    card = page.locator(".chart-card")
    await expect(card.locator("canvas")).to_have_count(1)
    await card.scroll_into_view_if_needed()
    await asyncio.to_thread(SHOTS.mkdir, parents=True, exist_ok=True)
    await card.screenshot(path=str(SHOTS / "dashboard-chart.png"))
    # The waiting line (blue) climbs to 3; the lone service level (green) is a dot.
    assert await _pixels(page, (0x1A, 0x5F, 0xB4)) > 200
    assert await _pixels(page, (0x1E, 0x7B, 0x34)) > 20


async def _pixels(page: Page, rgb: tuple[int, int, int]) -> int:
    """How many pixels of the chart's canvas are near ``rgb``."""
    count: int = await page.evaluate(
        """([r, g, b]) => {
            const c = document.querySelector('#chart canvas');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 0; i < d.length; i += 4) {
                if (Math.abs(d[i] - r) < 24 && Math.abs(d[i + 1] - g) < 24
                    && Math.abs(d[i + 2] - b) < 24 && d[i + 3] > 200) n++;
            }
            return n;
        }""",
        list(rgb),
    )
    return count


async def test_the_dashboard_shows_callbacks_in_their_place(serve: Serve, page: Page) -> None:
    client = await serve(
        generic_webhook_secret=SecretStr(GENERIC_SECRET),
        # Never reached: nobody accepts here, so nobody is rung.
        generic_callback_url="http://127.0.0.1:9/pbx/commands",
    )
    resp = await client.put("/api/queues/general", json={"callback": {"after_seconds": 0}})
    assert resp.status == 200, await resp.text()
    password = await _supervisor(client)
    await _sign_in(page, client, "sam", password)
    for n in (1, 2):
        body = json.dumps(
            {"type": "call.incoming", "call_id": f"pbx-{n}", "from": f"+1212555010{n}"}
        )
        status, _ = await post_generic(client, body.encode())
        assert status == 200
    await expect(_waiting_rows(page)).to_have_count(2)
    taken = json.dumps({"type": "call.callback_requested", "call_id": "pbx-1"}).encode()
    status, _ = await post_generic(client, taken)
    assert status == 200
    waiting = page.locator('#queues tr[data-queue="general"] [data-field="waiting"]')
    await expect(waiting).to_have_text("2 (1 callback)")
    await expect(_waiting_rows(page).first.locator('[data-field="why"]')).to_contain_text(
        "callback: the caller is not on the line, same place"
    )
    await asyncio.to_thread(SHOTS.mkdir, parents=True, exist_ok=True)
    await page.set_viewport_size({"width": 1280, "height": 800})
    await page.screenshot(path=str(SHOTS / "dashboard-callback.png"))
