"""Who may use ``/api``: supervisors and integrations holding the API token.

Agents authenticate with their own tokens on ``/ws/agent`` and see only their
own calls there; the REST API reads and changes any customer, queue or
agent, so an agent token never opens it. Without a configured token the API
is open, which suits a trusted network or a laptop; the service warns at
start so that it is a choice, not an accident.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from pydantic import SecretStr

from callcenter.errors import Unauthorized

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: The paths the token guards.
GUARDED_PREFIX = "/api/"


def bearer_token(request: web.Request) -> str | None:
    """The token of ``Authorization: Bearer <token>``; None when there is none.

    One reading of the header for every door (the API guard, the agent page's
    session check, the agent socket), so they all accept the same spellings.
    """
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def api_token_guard(token: SecretStr) -> Middleware:
    expected = token.get_secret_value().encode()

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(GUARDED_PREFIX):
            given = bearer_token(request)
            if given is None:
                raise Unauthorized("the API needs the API token: Authorization: Bearer <token>")
            if not hmac.compare_digest(given.encode(), expected):
                raise Unauthorized("the API token is not accepted")
        return await handler(request)

    return guard
