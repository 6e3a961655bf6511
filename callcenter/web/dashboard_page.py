"""The supervisor dashboard page: ``GET /dashboard`` and its files under ``/dashboard/static/``.

Static like the agent page, under the same rules: one strict policy (nothing
from elsewhere, no inline script), an allow-list of files read once. The page
signs in with ``POST /api/session`` and gets everything it shows over
``/ws/dashboard``; its actions are the REST calls, with the session token.
The chart library (uPlot, MIT, ``uPlot.LICENSE`` beside it) ships here as its
own minified build, so nothing is loaded from a CDN.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from callcenter.web.agent_page import _PAGE_HEADERS, _file_handler, shipped_files

FILES = Path(__file__).parent / "dashboard"


async def dashboard_html(request: web.Request) -> web.FileResponse:
    return web.FileResponse(FILES / "dashboard.html", headers=_PAGE_HEADERS)


def add_page(app: web.Application) -> None:
    app.router.add_get("/dashboard", dashboard_html)
    app.router.add_get("/dashboard/static/{name}", _file_handler(shipped_files(FILES)))
