"""Browser tests: the agent page in headless Chromium (Debian's package), driven by Playwright.

No browser is downloaded: Playwright drives ``/usr/bin/chromium``, which
``scripts/test`` installs with apt when it is missing. One browser per
session; each test gets a fresh context (its own storage, like a new
profile) and a real service on 127.0.0.1 with a fresh database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from playwright.async_api import Browser, Page, async_playwright

from callcenter.app import create_app
from callcenter.config import Settings
from tests.conftest import ADMIN
from tests.integration.queue_helpers import FAST

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

Serve = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: ./scripts/test installs Debian's chromium package")
    return CHROMIUM


@pytest.fixture(scope="session")
async def browser(chromium_path: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(chromium_path), args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A page in a fresh browser context; a script error on the page fails the test."""
    # A fixed locale and zone, so numbers and dates read the same on every machine.
    context = await browser.new_context(locale="en-US", timezone_id="UTC")
    context.set_default_timeout(5000)
    tab = await context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield tab
    finally:
        await context.close()
    assert not errors, f"the page threw: {errors}"


@pytest.fixture
def serve(
    settings: Settings,
    pool: asyncpg.Pool[Any],
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
) -> Serve:
    """Start the service on 127.0.0.1 (a free port, or ``port=`` to come back on the same one)."""

    async def start(port: int | None = None, **changes: Any) -> TestClient[Any, Any]:
        app: web.Application = create_app(settings.model_copy(update=FAST | changes), pool=pool)
        return await aiohttp_client(
            app, server_kwargs={"port": port} if port else {}, headers=ADMIN
        )

    return start
