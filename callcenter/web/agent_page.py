"""The agent page: ``GET /agent``, its files under ``/agent/static/``, and a sign-in check.

The page itself is static; everything it shows comes over ``/ws/agent``. A
browser cannot read the HTTP status of a refused websocket handshake (it only
sees the socket close), so the page asks ``GET /agent/session`` with the token
to tell "token not accepted" apart from "service unreachable".
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from callcenter import app_keys
from callcenter.errors import NotFound, Unauthorized
from callcenter.http.routing import Routes
from callcenter.queue import agents
from callcenter.queue.models import Agent

FILES = Path(__file__).parent / "agent"

#: Everything the page needs comes from the service itself: no CDN, no inline script.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

#: The kinds of file the page is made of; nothing else in the folder is served.
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}

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
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("send the agent token as Authorization: Bearer <token>")
    async with app_keys.pool(request.app).acquire() as conn:
        agent_id = await agents.agent_for_token(conn, token)
        if agent_id is None:
            raise Unauthorized("unknown agent token")
        return await agents.get_agent(conn, agent_id)


async def agent_html(request: web.Request) -> web.FileResponse:
    return web.FileResponse(FILES / "agent.html", headers=_PAGE_HEADERS)


async def agent_file(request: web.Request) -> web.FileResponse:
    """One of the page's files. The route's ``{name}`` cannot hold a ``/``, so nothing
    outside the folder can be named; a missing file is a problem body, like any 404."""
    name = request.match_info["name"]
    path = FILES / name
    content_type = _TYPES.get(path.suffix)
    if content_type is None or not path.is_file():
        raise NotFound(f"the agent page has no file {name!r}", field="name")
    headers = {
        "Content-Type": f"{content_type}; charset=utf-8",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-cache",
    }
    return web.FileResponse(path, headers=headers)


def add_page(app: web.Application) -> None:
    """The page and its files (the session check is in ``routes``, so OpenAPI lists it)."""
    app.router.add_get("/agent", agent_html)
    app.router.add_get("/agent/static/{name}", agent_file)
