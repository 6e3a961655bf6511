"""Issue 18, part 4 in the browser: a stopping instance sends its panels to another at once.

Two instances on one database behind one address (a TCP proxy standing in for
the load balancer). The first is stopped as Ctrl-C stops it: its panels get a
close frame 1012, and the page reconnects to the second within 2 s instead of
saying "Connected" to a service that is gone.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from playwright.async_api import Page, expect

from tests.browser.conftest import Serve
from tests.browser.page_helpers import SilentProxy, go_available, sign_in
from tests.integration.queue_helpers import make_agent, make_queue


async def test_the_page_reconnects_to_another_instance_within_2_s_of_a_stop(
    serve: Serve, page: Page, tmp_path: Path
) -> None:
    first = await serve(agent_grace_seconds=30)
    second = await serve(agent_grace_seconds=30)
    await make_queue(first, "general")
    _, token = await make_agent(first, "ada")
    proxy = await SilentProxy(first.server.port).start()
    try:
        await sign_in(page, proxy.url("/agent"), token)
        await go_available(page)
        conn = page.locator("#conn")
        seen = await page.evaluate_handle("[]")
        # Every label the pill shows, in order, as it shows them.
        await page.evaluate(
            """(seen) => new MutationObserver(() => seen.push(
                 document.getElementById('conn').dataset.conn + ':' +
                 document.getElementById('conn').textContent)).observe(
                 document.getElementById('conn'), {attributes: true, childList: true,
                 subtree: true, characterData: true})""",
            seen,
        )

        proxy.target_port = second.server.port  # new connections go to the other instance
        started = time.monotonic()
        stopping = asyncio.create_task(first.server.close())  # as on Ctrl-C (clients stay)
        # Told of the restart, then connected again: to the other instance (the only one
        # accepting connections now), within 2 s of the stop.
        await page.wait_for_function(
            """(seen) => seen.some((l) => l.startsWith('reconnecting:Service restarting')) &&
                 seen[seen.length - 1].startsWith('connected:')""",
            arg=seen,
            timeout=2_000,
        )
        assert time.monotonic() - started < 2.5
        await expect(conn).to_have_attribute("data-conn", "connected")
        await stopping
        # The second instance has the agent as it was: available, and the buttons work.
        await expect(page.locator("#agent-state")).to_have_attribute("data-state", "available")
        await page.click("#go-offline")
        await expect(page.locator("#agent-state")).to_have_attribute("data-state", "offline")
        await page.screenshot(path=str(tmp_path / "after-restart.png"))
        assert len(proxy.websocket_links()) == 2
    finally:
        await proxy.close()
