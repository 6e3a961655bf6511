"""What every webhook endpoint does before it trusts a byte: bound the body, know its URL."""

from __future__ import annotations

import asyncio

from aiohttp import web

from callcenter.errors import PayloadTooLarge, RequestTimeout

_CHUNK = 16_384


async def read_body(request: web.Request, limit: int, *, seconds: float = 10.0) -> bytes:
    """The raw body, refused with 413 as soon as it passes ``limit`` bytes.

    Webhooks get a smaller limit than the rest of the API: a peer's event is
    a few hundred bytes, and a signature can only be checked over the whole
    body, so the body is read (and bounded) before anything else.
    """
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(
            f"the request body ({request.content_length} bytes) is larger than the webhook "
            f"limit of {limit} bytes"
        )
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(seconds):  # a stalled peer holds no connection for ever
            while chunk := await request.content.read(_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(
                        f"the request body is larger than the webhook limit of {limit} bytes"
                    )
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {seconds:g} s") from None
    return b"".join(chunks)


def public_base(request: web.Request, public_url: str | None) -> str:
    """The scheme, host and path prefix the peer used to reach us, without a trailing slash.

    Behind a proxy the request's own host and scheme are the proxy's, so a
    configured ``public_url`` wins; without one the request's URL is taken.
    """
    if public_url:
        return public_url.rstrip("/")
    return f"{request.scheme}://{request.host}"


def requested_url(request: web.Request, public_url: str | None) -> str:
    """The full URL the peer requested (path and raw query string), as it signed it."""
    return public_base(request, public_url) + request.raw_path
