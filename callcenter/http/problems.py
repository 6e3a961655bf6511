"""Errors as RFC 9457 problem bodies, never as tracebacks.

Every error leaves as ``application/problem+json`` with ``type``, ``title``,
``status``, ``detail`` and, where one field is at fault, ``field``. Domain
errors carry their status; aiohttp's own HTTP errors (404 route, 405, 413)
are rewritten to the same shape; a database out of reach is a 503 with
``Retry-After``; anything else is logged with its traceback and answered with
a bare 500 that reveals nothing.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from pydantic import ValidationError

from callcenter.errors import CallCenterError

#: The database is down, restarting or out of reach: 503 with Retry-After, not a 500.
#: (Errors the server answers about the statement itself stay 500s: they are bugs.)
DATABASE_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, no socket, reset
    asyncpg.InterfaceError,  # the connection closed under the statement
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.OperatorInterventionError,  # class 57: shutting down, cannot connect now
    # A pooled connection whose backend went away mid-protocol ("cannot switch to state
    # 12; another operation is in progress"): seen when PostgreSQL stops under load.
    asyncpg.InternalClientError,
)

_log = logging.getLogger(__name__)
PROBLEM_TYPE = "application/problem+json"


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    field: str | None = None,
    **extra: Any,
) -> web.Response:
    body: dict[str, Any] = {
        "type": f"https://callcenter.invalid/problems/{title.lower().replace(' ', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if field is not None:
        body["field"] = field
    body.update(extra)
    return web.json_response(body, status=status, content_type=PROBLEM_TYPE)


def field_path(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as the field a client wrote: ``phones[0]``, ``answer.value``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def first_error(exc: ValidationError, *, skip: int = 0) -> tuple[str | None, str]:
    """The first field at fault and a sentence naming it, for answers that name one field.

    ``skip`` drops leading location parts that are not the client's (a union's tag).
    """
    errors = exc.errors()
    if not errors:
        return None, "invalid"
    first = errors[0]
    where = field_path(tuple(first["loc"][skip:]))
    return (where, f"{where}: {first['msg']}") if where else (None, first["msg"])


def validation_problem(exc: ValidationError, where: str) -> web.Response:
    """422 listing every field at fault; ``field`` names the first."""
    errors = [
        {"field": field_path(e["loc"]), "message": e["msg"], "type": e["type"]}
        for e in exc.errors()
    ]
    first = errors[0] if errors else {"field": None, "message": "invalid"}
    detail = f"{where}: {first['field']}: {first['message']}" if first["field"] else where
    return problem(422, "Validation failed", detail, field=first["field"], errors=errors)


def problem_middleware(*, max_body_bytes: int) -> Middleware:
    """The middleware that turns every error into a problem body.

    A factory, handed what it needs (the body limit it names in a 413), so
    this module depends on nothing above the HTTP layer.
    """

    @web.middleware
    async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except CallCenterError as exc:
            answer = problem(exc.status, exc.title, exc.detail, field=exc.field, **exc.extra)
            if "retry_after" in exc.extra:
                answer.headers["Retry-After"] = str(exc.extra["retry_after"])
            return answer
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            if exc.status == 413:
                detail = f"the request body is larger than the limit of {max_body_bytes} bytes"
                return problem(413, "Payload too large", detail)
            detail = (
                exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
            )
            if exc.status == 404 and detail == exc.reason:
                detail = f"no resource at {request.method} {request.path}"
            return problem(exc.status, exc.reason, detail)
        except DATABASE_UNAVAILABLE as exc:
            # Not a bug: the database is restarting or out of reach. A peer that retries
            # 5xx (every PBX's webhook client) sends it again; one line, no traceback.
            _log.warning("database unavailable on %s %s: %s", request.method, request.path, exc)
            answer = problem(
                503, "Database unavailable", "the database does not answer; try again shortly"
            )
            answer.headers["Retry-After"] = "1"
            return answer
        except Exception:
            _log.exception("unhandled error on %s %s", request.method, request.path)
            return problem(500, "Internal error", "the service failed; the error is in its log")

    return problems
