"""Who is asking, and may they: principals, roles and the gate every route passes.

Closed by default. Every route declares who may call it (``Access``): anyone
(the probes, the pages, signing in), a telephony peer (whose handler checks
its signature), or a role. A request for a role carries a bearer token; the
gate turns it into a ``Principal`` with one resolver the application hands in
(sessions, integration tokens and agent tokens live in higher rooms) plus the
bootstrap admin token from the settings. No token: 401. A role too low: 403.
Wrong tokens from one address are counted, and past the limit that address
gets 429 until the window has passed, so a token cannot be guessed at speed.

An operator may open the API on a laptop (``CALLCENTER_INSECURE_OPEN_API``):
then a request without a token acts as an admin named ``open-api``, and the
service says so at start. A token that is sent is still checked.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from pydantic import SecretStr

from callcenter.errors import (
    CallCenterError,
    Forbidden,
    MisdirectedRequest,
    TooManyRequests,
    Unauthorized,
)


class Role(StrEnum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


_RANK = {Role.AGENT: 1, Role.SUPERVISOR: 2, Role.ADMIN: 3}

#: Who may call a route: anyone, a peer that signs its requests, or a role (and those above it).
Access = Literal["public", "peer", "agent", "supervisor", "admin"]


@dataclass(frozen=True)
class Principal:
    """The authenticated caller; ``who`` is what the audit trail and the records say."""

    kind: Literal["person", "session", "integration", "agent", "bootstrap", "open"]
    role: Role
    name: str
    #: The person's, agent's or credential's id, when there is one.
    id: int | None = None
    #: The credential this request used (a session or an integration token), to sign out.
    credential_id: int | None = None
    #: When the token stops opening anything, if the resolver said (an agent's: its open
    #: panels are closed then), so a socket need not read it back after authenticating.
    expires_at: datetime | None = None

    @property
    def who(self) -> str:
        return f"{self.role.value}:{self.name}"

    def may(self, access: Access) -> bool:
        if access in ("public", "peer"):
            return True
        return _RANK[self.role] >= _RANK[Role(access)]


#: What the agent doors (its socket, its page's session check) say to any other token.
UNKNOWN_AGENT = "unknown agent token"

#: Turns a presented token into its principal; None when the token stands for nobody.
#: The second argument is the only kind of principal the asker takes (None: any), so a
#: resolver may skip the stores of other kinds: an agent's socket opens on one look-up.
#: The third says the token opens a connection that keeps its principal present (the
#: agent's socket): the resolver records the presence with the same look-up.
Resolver = Callable[[str, "str | None", bool], Awaitable["Principal | None"]]


def new_token() -> tuple[str, bytes]:
    """A fresh bearer token (32 random bytes) and the digest that is stored instead of it."""
    token = secrets.token_urlsafe(32)
    return token, token_digest(token)


def token_digest(token: str) -> bytes:
    """SHA-256: a token has full entropy, so a fast hash is enough; the table holds no token."""
    return hashlib.sha256(token.encode()).digest()


def bearer_token(request: web.Request) -> str | None:
    """The token of ``Authorization: Bearer <token>``; None when there is none.

    One reading of the header for every door (the gate, the agent page's
    session check, the agent socket), so they all accept the same spellings.
    """
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        return None
    return given


#: Where the gate keeps a request's principal once resolved.
PRINCIPAL_KEY: web.RequestKey[Principal | None] = web.RequestKey("principal")


class Gate:
    """Resolves and checks principals; one per application."""

    def __init__(
        self,
        resolver: Resolver | None,
        *,
        bootstrap_token: SecretStr | None,
        open_api: bool,
        failures_per_minute: int,
    ) -> None:
        self.resolver = resolver
        self._bootstrap = (
            bootstrap_token.get_secret_value().encode() if bootstrap_token is not None else None
        )
        self.open_api = open_api
        self._limit = RateLimitItemPerMinute(failures_per_minute)
        self._failures = MovingWindowRateLimiter(MemoryStorage())

    def _too_many(self, key: str) -> TooManyRequests:
        stats = self._failures.get_window_stats(self._limit, key)
        return TooManyRequests(
            "too many wrong credentials from this address; try again later",
            retry_after=max(1, round(stats.reset_time - _now())),
        )

    def wrong_token(self, request: web.Request, detail: str | None = None) -> CallCenterError:
        """What to answer a token that stands for nobody: 401, or 429 past the limit.

        Only wrong tokens are counted and refused: a right one always works, so
        clients behind one proxy address are not locked out by someone else's
        guesses (and a token of 256 random bits cannot be guessed anyway).
        """
        if not self._failures.hit(self._limit, _address(request)):
            return self._too_many(_address(request))
        return Unauthorized(detail or "the token is not accepted (unknown, expired or revoked)")

    def attempt(self, request: web.Request, name: str) -> None:
        """Count a sign-in attempt *before* its password is checked; 429 past the limit.

        Counted first, so attempts sent at once cannot all slip under the limit
        while their (slow) password checks run.
        """
        key = f"{_address(request)}|sign-in"
        if not self._failures.hit(self._limit, key):
            raise self._too_many(key)

    async def identify(self, request: web.Request) -> Principal | None:
        """The request's principal, or None without a token (a wrong token is a 401)."""
        if PRINCIPAL_KEY in request:
            return request[PRINCIPAL_KEY]
        token = bearer_token(request)
        if token is not None:
            return await self.authenticate(request, token)
        principal = Principal("open", Role.ADMIN, "open-api") if self.open_api else None
        request[PRINCIPAL_KEY] = principal
        return principal

    async def authenticate(
        self,
        request: web.Request,
        token: str,
        *,
        kind: str | None = None,
        wrong: str | None = None,
        present: bool = False,
    ) -> Principal:
        """The principal of ``token``, kept on the request; a wrong one is counted and
        refused (401, 429 past the limit). Header tokens come here through ``identify``;
        a websocket's ``?token=`` (a browser cannot set headers on one) comes directly.

        ``kind``: only a principal of that kind counts (the agent doors take agent
        tokens only); any other token is as wrong as an unknown one, said in ``wrong``.
        ``present``: the token opens a connection that keeps its principal present (the
        agent's socket); the resolver records that with the look-up (``Resolver``).
        """
        found = await self._resolve(token, kind, present)
        if found is None or (kind is not None and found.kind != kind):
            raise self.wrong_token(request, wrong)
        request[PRINCIPAL_KEY] = found
        return found

    async def still(self, token: str, *, kind: str | None = None) -> Principal | None:
        """Who ``token`` stands for now (None: signed out, removed, revoked or expired),
        for sockets that check again the token they were opened with; ``kind`` as for
        ``authenticate`` (a principal of another kind may then come back as None)."""
        return await self._resolve(token, kind, False)

    async def _resolve(self, token: str, kind: str | None, present: bool) -> Principal | None:
        if self._bootstrap is not None and hmac.compare_digest(token.encode(), self._bootstrap):
            return Principal("bootstrap", Role.ADMIN, "bootstrap")
        if self.resolver is None:
            return None
        return await self.resolver(token, kind, present)

    async def require(self, request: web.Request, access: Access) -> Principal | None:
        """The principal, if ``access`` lets it in; 401 without one, 403 with too low a role."""
        if access in ("public", "peer"):
            return None
        principal = await self.identify(request)
        if principal is None:
            raise Unauthorized("this needs a token: Authorization: Bearer <token>")
        if not principal.may(access):
            raise Forbidden(f"this needs the {access} role; {principal.who} does not have it")
        return principal


def principal(request: web.Request) -> Principal:
    """The principal the gate let in (for handlers of routes that need a role)."""
    found = request.get(PRINCIPAL_KEY)
    if not isinstance(found, Principal):
        raise Unauthorized("this needs a token: Authorization: Bearer <token>")
    return found


def _address(request: web.Request) -> str:
    return request.remote or "unknown"


def _now() -> float:
    return time.time()


#: Paths any Host may name: probes and scrapes come by address, peers sign their requests.
_ANY_HOST = ("/healthz", "/readyz", "/metrics", "/telephony/")


def host_guard(allowed: set[str]) -> Middleware:
    """Refuse requests whose ``Host`` is not one of ours (421), against DNS rebinding.

    A page on another site can make a browser send requests to a name that
    resolves to this service; the browser then sends that name as ``Host``.
    Checking it keeps such a page from reading what the service answers.
    ``*`` in ``allowed`` turns the check off (a proxy that checks it already).
    """
    names = {name.lower().strip("[]") for name in allowed}

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if "*" not in names and not request.path.startswith(_ANY_HOST):
            host = _host_name(request.host)
            if host not in names:
                raise MisdirectedRequest(
                    f"this service does not answer for the host {host!r}; an operator can "
                    "add it to CALLCENTER_ALLOWED_HOSTS",
                    field="Host",
                )
        return await handler(request)

    return guard


def _host_name(host: str) -> str:
    """``example.com:8080`` -> ``example.com``; ``[::1]:8080`` -> ``::1``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        return host.partition(":")[0]
    return host
