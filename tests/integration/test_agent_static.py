"""``GET /agent/static/{name}`` serves the files the page ships with, and nothing else.

Before, the name was joined to the folder: ``%2F`` is decoded inside ``{name}``, so an
absolute path or ``..%2F`` reached any ``.html``, ``.js`` or ``.css`` file on the machine.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from callcenter.web.agent_page import FILES

MODULES = sorted(path.name for path in FILES.glob("*.js"))


async def fetch_raw(client: TestClient[Any, Any], path: str) -> tuple[int, str]:
    """GET ``path`` exactly as written (no client-side clean-up of ``..`` or escapes)."""
    url = URL(str(client.make_url("/")).rstrip("/") + path, encoded=True)
    async with client.session.get(url) as resp:
        return resp.status, await resp.text()


def up_and_over(target: Path) -> str:
    """``target`` as a path relative to the page's folder: ``../../…``."""
    return os.path.relpath(target, FILES)


def test_the_page_is_made_of_modules() -> None:
    # The entry module and the ones it imports; if this shrinks, the page was merged back.
    assert "agent.js" in MODULES and len(MODULES) > 5


@pytest.mark.parametrize("name", MODULES)
async def test_each_module_is_served_as_javascript(client: TestClient[Any, Any], name: str) -> None:
    resp = await client.get(f"/agent/static/{name}")
    assert resp.status == 200
    # A browser runs a module only when it comes with a JavaScript type.
    assert resp.content_type == "text/javascript"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert await resp.read() == (FILES / name).read_bytes()


async def test_the_style_sheet_is_served_as_css(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/agent/static/agent.css")
    assert resp.status == 200 and resp.content_type == "text/css"


async def test_an_absolute_path_encoded_in_the_name_is_not_found(
    client: TestClient[Any, Any], tmp_path: Path
) -> None:
    secret = tmp_path / "secret.js"
    secret.write_text("// not part of the page\n")
    status, body = await fetch_raw(client, "/agent/static/" + quote(str(secret), safe=""))
    assert status == 404 and "not part of the page" not in body
    # The reproduction from the issue, on any machine that has the file.
    doc = "/usr/share/doc/base-passwd/users-and-groups.html"
    status, _ = await fetch_raw(client, "/agent/static/" + quote(doc, safe=""))
    assert status == 404


async def test_dot_dot_encoded_in_the_name_is_not_found(
    client: TestClient[Any, Any], tmp_path: Path
) -> None:
    secret = tmp_path / "secret.css"
    secret.write_text("/* not part of the page */\n")
    relative = up_and_over(secret)
    assert relative.startswith("..")
    status, body = await fetch_raw(client, "/agent/static/" + quote(relative, safe=""))
    assert status == 404 and "not part of the page" not in body
    # One level up is the Python package: its files are not the page's either.
    status, _ = await fetch_raw(client, "/agent/static/..%2Fagent%2Fagent.js")
    assert status == 404


@pytest.mark.parametrize(
    "path",
    [
        "/agent/static/..",
        "/agent/static/../agent_page.py",
        "/agent/static/../agent/agent.js",
        "/agent/static/.%2Fagent.js",
        "/agent/static/%2E%2E%2Fagent%2Fagent.js",
    ],
)
async def test_dot_dot_written_plainly_is_not_found(
    client: TestClient[Any, Any], path: str
) -> None:
    status, _ = await fetch_raw(client, path)
    assert status == 404


@pytest.mark.parametrize("name", ["nothing.js", "agent.html", "AGENT.JS", "agent.js.map", ""])
async def test_a_name_that_does_not_ship_is_not_found(
    client: TestClient[Any, Any], name: str
) -> None:
    resp = await client.get(f"/agent/static/{name}")
    assert resp.status == 404
    if name:
        body = await resp.json()
        assert body["status"] == 404 and body.get("field") == "name"
