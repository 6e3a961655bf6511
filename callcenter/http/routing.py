"""Typed routes: one declaration gives validation, serialisation and OpenAPI.

A room declares its endpoints with ``Routes.route``, naming the pydantic
models of the body, the query and the answer. The wrapper parses and
validates input before the handler runs (400 for bytes that are not JSON,
422 naming the field for JSON that does not fit), serialises the answer, and
the same declarations produce ``/openapi.json``, so the document cannot drift
from what the code accepts.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from callcenter import app_keys
from callcenter.errors import (
    BadRequest,
    NotFound,
    RequestTimeout,
    Unprocessable,
    UnsupportedMediaType,
)
from callcenter.http.auth import Access
from callcenter.http.problems import PROBLEM_TYPE, validation_problem
from callcenter.http.text import describe, unstorable_field

HandlerFn = Callable[..., Awaitable[Any]]
#: The largest id PostgreSQL's bigint holds: ids and cursors are bounded by it at the
#: edge, so a huge number is a 422 naming its field, not a driver error.
BIGINT_MAX = 2**63 - 1
_PATH_PARAM = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


class Problem(BaseModel):
    """Every error answer (RFC 9457 problem details)."""

    type: str
    title: str
    status: int
    detail: str
    field: str | None = Field(default=None, description="The input field at fault, if one is.")
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="422: every field at fault."
    )


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: HandlerFn
    summary: str
    tag: str
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    response: type[BaseModel] | None
    status: int
    errors: tuple[int, ...]
    #: Documented but read by the handler itself (a signature over the raw bytes comes first).
    raw_body: type[BaseModel] | None = None
    body_media_type: str = "application/json"
    response_media_type: str = "application/json"
    #: Who may call it (``http.auth``): closed to all but admins unless it says otherwise.
    access: Access = "admin"


class Routes:
    """The endpoints of one room, declared next to their handlers."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.endpoints: list[Endpoint] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        status: int = 200,
        errors: Iterable[int] = (),
        raw_body: type[BaseModel] | None = None,
        body_media_type: str = "application/json",
        response_media_type: str = "application/json",
        access: Access = "admin",
    ) -> Callable[[HandlerFn], HandlerFn]:
        """Declare an endpoint.

        ``access`` says who may call it: ``public``, ``peer`` (a telephony
        peer; the handler checks its signature) or the least role that may
        (``agent``, ``supervisor``, ``admin``). Left out, only admins may: a
        route nobody thought about is closed.

        ``raw_body`` documents a body the handler reads and checks itself (a
        webhook verifies its signature over the raw bytes before parsing);
        ``body_media_type`` and ``response_media_type`` name what goes over the
        wire when it is not JSON (form posts, TwiML).
        """

        def register(fn: HandlerFn) -> HandlerFn:
            found = set(errors)
            if body is not None or raw_body is not None:
                found |= {400, 413, 422}
            if query is not None:
                found.add(422)
            if _PATH_PARAM.search(path):
                found.add(404)
            if body is not None:
                found.add(415)
            if access not in ("public", "peer"):
                found |= {401, 403, 429}
            self.endpoints.append(
                Endpoint(
                    method.upper(),
                    path,
                    fn,
                    summary,
                    self.tag,
                    body,
                    query,
                    response,
                    status,
                    tuple(sorted(found)),
                    raw_body,
                    body_media_type,
                    response_media_type,
                    access,
                )
            )
            return fn

        return register


def path_id(request: web.Request, name: str) -> int:
    """A positive integer path parameter; anything else names no resource (404)."""
    raw = request.match_info[name]
    if not raw.isdigit() or int(raw) <= 0 or len(raw) > 18:
        raise NotFound(f"no resource with {name} {raw!r}", field=name)
    return int(raw)


async def _parse_body(request: web.Request, model: type[BaseModel]) -> BaseModel | web.Response:
    # Only JSON, declared as such: a browser sends a cross-site form (text/plain,
    # form-urlencoded) without asking first, so such a body must never be read.
    if request.content_type != "application/json":
        raise UnsupportedMediaType(
            f"the body must be application/json, not {request.content_type!r}",
            field="Content-Type",
        )
    seconds = request.app[app_keys.SETTINGS].body_read_seconds
    try:
        async with asyncio.timeout(seconds):
            raw = await request.read()
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {seconds:g} s") from None
    if not raw:
        raise BadRequest("the request needs a JSON body")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from exc
    bad = unstorable_field(data)
    if bad is not None:
        raise Unprocessable(describe(bad), field=bad or None)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        return validation_problem(exc, "request body")


def _wrap(endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        await request.app[app_keys.GATE].require(request, endpoint.access)
        bad = unstorable_field(dict(request.match_info))
        if bad is not None:
            raise Unprocessable(describe(bad), field=bad)
        kwargs: dict[str, Any] = {}
        if endpoint.body is not None:
            parsed = await _parse_body(request, endpoint.body)
            if isinstance(parsed, web.Response):
                return parsed
            kwargs["body"] = parsed
        if endpoint.query is not None:
            bad = unstorable_field(dict(request.query))
            if bad is not None:
                raise Unprocessable(describe(bad), field=bad)
            try:
                kwargs["query"] = endpoint.query.model_validate(dict(request.query))
            except ValidationError as exc:
                return validation_problem(exc, "query")
        result = await endpoint.handler(request, **kwargs)
        if isinstance(result, web.StreamResponse):
            return result
        if result is None:
            return web.Response(status=endpoint.status)
        return web.json_response(text=result.model_dump_json(), status=endpoint.status)

    handle.__name__ = endpoint.handler.__name__
    return handle


def install(app: web.Application, groups: Iterable[Routes]) -> list[Endpoint]:
    """Add every endpoint of ``groups`` to ``app``; return them for the OpenAPI document."""
    endpoints = [e for g in groups for e in g.endpoints]
    for endpoint in endpoints:
        app.router.add_route(endpoint.method, endpoint.path, _wrap(endpoint))
    return endpoints


def openapi_document(endpoints: Iterable[Endpoint], *, title: str, version: str) -> dict[str, Any]:
    """An OpenAPI 3.1 document built from the endpoints' pydantic models."""
    schemas: dict[str, Any] = {}

    def ref(model: type[BaseModel], mode: str) -> dict[str, str]:
        schema = model.model_json_schema(
            ref_template="#/components/schemas/{model}",
            mode="validation" if mode == "in" else "serialization",
        )
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    problem_ref = ref(Problem, "out")
    paths: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        params: list[dict[str, Any]] = [
            {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
            for n in _PATH_PARAM.findall(e.path)
        ]
        if e.query is not None:
            qs = e.query.model_json_schema()
            required = set(qs.get("required", []))
            for name, prop in qs.get("properties", {}).items():
                params.append(
                    {
                        "name": name,
                        "in": "query",
                        "required": name in required,
                        "description": prop.get("description", ""),
                        "schema": {k: v for k, v in prop.items() if k != "description"},
                    }
                )
        ok: dict[str, Any] = {"description": "OK" if e.status < 300 else "Created"}
        if e.response is not None:
            ok["content"] = {e.response_media_type: {"schema": ref(e.response, "out")}}
        elif e.response_media_type != "application/json":
            ok["content"] = {e.response_media_type: {"schema": {"type": "string"}}}
        op: dict[str, Any] = {
            "summary": e.summary,
            "operationId": e.handler.__name__,
            "tags": [e.tag],
            "parameters": params,
            "responses": {str(e.status): ok}
            | {
                str(code): {
                    "description": _REASONS.get(code, "Error"),
                    "content": {PROBLEM_TYPE: {"schema": problem_ref}},
                }
                for code in e.errors
            },
        }
        if e.access not in ("public", "peer"):
            op["security"] = [{"bearer": []}]
            op["x-access"] = e.access
        documented = e.body or e.raw_body
        if documented is not None:
            op["requestBody"] = {
                "required": True,
                "content": {e.body_media_type: {"schema": ref(documented, "in")}},
            }
        paths.setdefault(e.path, {})[e.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A session token (POST /api/session), an integration "
                    "token, the bootstrap admin token, or an agent's token.",
                }
            },
        },
    }


_REASONS = {
    400: "Malformed request",
    401: "Not authenticated",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict with stored state",
    413: "Body too large",
    415: "The body is not application/json",
    422: "Input does not fit the schema",
    429: "Too many wrong credentials from this address",
}


def docs_page(document: dict[str, Any]) -> str:
    """A plain HTML reference of the document (no script, no CDN: works offline)."""
    rows = []
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            codes = ", ".join(op["responses"])
            rows.append(
                f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}</code>"
                f"</td><td>{html.escape(op['summary'])}</td><td>{codes}</td></tr>"
            )
    schemas = json.dumps(document["components"]["schemas"], indent=2, default=str)
    title = html.escape(document["info"]["title"])
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{title} API</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:2rem}td,th{padding:.3rem .6rem;"
        "border-bottom:1px solid #ddd;text-align:left}pre{background:#f6f6f6;padding:1rem}"
        "</style></head><body>"
        f"<h1>{title} API</h1><p>Machine-readable: <a href='/openapi.json'>/openapi.json</a>"
        "</p><table><tr><th>method</th><th>path</th><th>what</th><th>answers</th></tr>"
        + "".join(rows)
        + f"</table><h2>Schemas</h2><pre>{html.escape(schemas)}</pre></body></html>"
    )
