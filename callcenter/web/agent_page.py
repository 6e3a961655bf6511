"""The agent page: ``GET /agent``, its files under ``/agent/static/``, and a sign-in check.

The page itself is static; everything it shows comes over ``/ws/agent``. A
browser cannot read the HTTP status of a refused websocket handshake (it only
sees the socket close), so the page asks ``GET /agent/session`` with the token
to tell "token not accepted" apart from "service unreachable".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from callcenter import app_keys
from callcenter.errors import NotFound, Unauthorized
from callcenter.http.auth import UNKNOWN_AGENT, bearer_token
from callcenter.http.routing import Routes
from callcenter.queue import agents
from callcenter.queue.models import Agent

FILES = Path(__file__).parent / "agent"

#: Everything the page needs comes from the service itself: no CDN, no inline script. The
#: page's ES modules (``<script type="module">`` and what they import) fall under
#: ``script-src``, which falls back to ``default-src 'self'``: same origin only.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

#: The kinds of file the page loads from ``/agent/static/``; the page itself is ``GET /agent``.
_TYPES = {".js": "text/javascript", ".css": "text/css"}


def shipped_files(folder: Path = FILES) -> dict[str, tuple[Path, str]]:
    """The files ``/agent/static/`` serves, by name: the page's scripts and styles as they
    ship, read from the folder once. A request is looked up here and never joined to a
    path, so no name (``%2F``, ``..``, an absolute path) reaches anything else."""
    return {
        path.name: (path, _TYPES[path.suffix])
        for path in sorted(folder.iterdir())
        if path.suffix in _TYPES and path.is_file()
    }


routes = Routes("agent page")


@routes.route(
    "GET",
    "/agent/session",
    summary="Whose agent token this is (the agent page checks a token before it connects)",
    response=Agent,
    errors=[401],
    access="public",
)
async def agent_session(request: web.Request) -> Agent:
    token = bearer_token(request)
    if token is None:
        raise Unauthorized("send the agent token as Authorization: Bearer <token>")
    # The one path that resolves a token (counted with every wrong token from this
    # address: 429 past the limit); only an agent's token is an agent token here.
    found = await request.app[app_keys.GATE].authenticate(
        request, token, kind="agent", wrong=UNKNOWN_AGENT
    )
    assert found.id is not None  # an agent principal always carries the agent's id
    async with app_keys.pool(request.app).acquire() as conn:
        return await agents.get_agent(conn, found.id)


async def agent_html(request: web.Request) -> web.FileResponse:
    return web.FileResponse(FILES / "agent.html", headers=_PAGE_HEADERS)


def _file_handler(
    files: dict[str, tuple[Path, str]],
) -> Callable[[web.Request], Awaitable[web.FileResponse]]:
    async def agent_file(request: web.Request) -> web.FileResponse:
        """One of the page's files, by its name in the allow-list; anything else is a
        problem body, like any 404."""
        name = request.match_info["name"]
        shipped = files.get(name)
        if shipped is None:
            raise NotFound(f"the agent page has no file {name!r}", field="name")
        path, content_type = shipped
        headers = {
            "Content-Type": f"{content_type}; charset=utf-8",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-cache",
        }
        return web.FileResponse(path, headers=headers)

    return agent_file


def add_page(app: web.Application) -> None:
    """The page and its files (the session check is in ``routes``, so OpenAPI lists it)."""
    app.router.add_get("/agent", agent_html)
    app.router.add_get("/agent/static/{name}", _file_handler(shipped_files()))
