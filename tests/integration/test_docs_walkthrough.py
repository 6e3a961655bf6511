"""The walk-throughs in README.md and docs/*.md work as printed on a fresh install.

Each document's ```sh blocks are read in order and run against a fresh service
(its own database, the shipped question bank, on 127.0.0.1) the way a reader
would type them, with ``localhost:8080`` pointed at the test's port:

* ``curl`` commands must answer below 400, or exactly the status a ``# -> NNN``
  comment under them shows (that is how a document shows an expected error);
  every simple ``"key": value`` pair on that ``# ->`` line must be in the answer,
  so the ids, tiers and outcomes a reader is shown are the ones they get;
* shell assignments (``SECRET=…``, ``SIG=$(…)``) are kept for the commands after them;
* ``.venv/bin/callcenter`` commands other than ``serve`` and ``demo`` run on the same database,
  must exit 0, and must print the text of their ``# ->`` line (up to any ``…``);
* anything else (installing, ``serve``, an interactive websocket client) is
  left to the reader; the test lists it but does not run it.

Each document starts from a fresh install of its own, as its text says.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from tests.conftest import AppFactory

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: The secret docs/telephony.md tells the reader to start the service with.
GENERIC_SECRET = "the shared secret"

_ASSIGNMENT = re.compile(r"""[A-Za-z_]\w*=('[^']*'|"[^"]*"|\$\(.*\)|[^\s'"]+)""", re.DOTALL)
_EXPECT = re.compile(r"#\s*->\s*(.*)")
_STATUS = re.compile(r"(\d{3})\b")
_PAIR = re.compile(r'"(\w+)":\s*("(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?|true|false|null)')


@dataclass
class Command:
    text: str
    line: int
    expect: str | None = None  # what the first ``# ->`` line under it says

    @property
    def kind(self) -> str:
        """``curl``, ``assign``, ``callcenter`` (run) or ``reader`` (left to the reader)."""
        if _ASSIGNMENT.fullmatch(self.text):
            return "assign"
        words = shlex.split(self.text, comments=True)
        program = next((w for w in words if not re.match(r"[A-Za-z_]\w*=", w)), "")
        if words and words[0] == "curl":
            return "curl"
        runs_on = words[words.index(program) + 1] if program == ".venv/bin/callcenter" else ""
        if runs_on and runs_on not in ("serve", "demo"):
            return "callcenter"
        return "reader"


@dataclass
class Walkthrough:
    document: Path
    commands: list[Command] = field(default_factory=list)


def _complete(text: str) -> bool:
    """A command ends at a line without a trailing backslash and with every quote closed."""
    if text.endswith("\\"):
        return False
    try:
        shlex.split(text, comments=True)
    except ValueError:
        return False
    return True


def parse(text: str, document: Path) -> Walkthrough:
    """The commands of the document's ```sh blocks, in order, with their ``# ->`` lines."""
    found = Walkthrough(document)
    in_block = False
    pending: list[str] = []
    start = 0
    last: Command | None = None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not in_block:
            if stripped == "```sh":
                in_block, last = True, None
            continue
        if stripped == "```" and not pending:
            in_block = False
            continue
        if not pending:
            if not stripped:
                continue
            if stripped.startswith("#"):
                said = _EXPECT.match(stripped)
                if said and last is not None and last.expect is None:
                    last.expect = said.group(1)
                continue
            start = number
        pending.append(line)
        joined = "\n".join(pending)
        if _complete(joined):
            last = Command(joined, start)
            found.commands.append(last)
            pending = []
    assert not in_block and not pending, f"{document.name}: a ```sh block is not closed"
    return found


def _pairs(expect: str) -> list[tuple[str, Any]]:
    return [(key, json.loads(value)) for key, value in _PAIR.findall(expect)]


def _holds(answer: Any, key: str, value: Any) -> bool:
    """Whether some object anywhere in ``answer`` has ``key`` equal to ``value``."""
    if isinstance(answer, dict):
        if key in answer and answer[key] == value and type(answer[key]) is type(value):
            return True
        return any(_holds(v, key, value) for v in answer.values())
    if isinstance(answer, list):
        return any(_holds(v, key, value) for v in answer)
    return False


def _check_pairs(where: str, expect: str, body: str) -> None:
    pairs = _pairs(expect)
    if not pairs:
        return
    answer = json.loads(body)
    for key, value in pairs:
        if isinstance(value, str) and ("..." in value or "…" in value):
            continue  # an elided text: the reader is shown its gist only
        assert _holds(answer, key, value), (
            f"{where}: the document shows {key!r}: {value!r}, the answer was {body}"
        )


async def _bash(script: str, cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        script,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _local(text: str) -> str:
    """The document's command with the clone's ``.venv`` replaced by this interpreter."""
    return text.replace(".venv/bin/callcenter", f"{shlex.quote(sys.executable)} -m callcenter")


async def run_walkthrough(walk: Walkthrough, port: int, db_url: str, workdir: Path) -> list[str]:
    """Run what a reader would run; return the commands left to the reader."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_")}
    env |= {
        "CALLCENTER_DATABASE_URL": db_url,
        "CALLCENTER_DATA_DIR": str(workdir / "var"),
        "COLUMNS": "500",  # rich wraps at 80 columns when not on a terminal
        "NO_COLOR": "1",
    }
    # Paths in the documents are relative to the clone.
    (workdir / "callcenter").symlink_to(ROOT / "callcenter")
    assignments: list[str] = []
    left: list[str] = []
    for command in walk.commands:
        where = f"{walk.document.name}:{command.line}"
        text = command.text.replace("localhost:8080", f"127.0.0.1:{port}")
        kind = command.kind
        if kind == "assign":
            # Evaluated once, as a reader's shell does (``TOKEN=$(… integration add …)``
            # makes one token, not one per command after it), and kept as its value.
            name = text.partition("=")[0]
            script = "set -euo pipefail\n" + "\n".join(assignments) + "\n"
            script += _local(text) + f'\nprintf %s "${name}"'
            code, out, err = await _bash(script, workdir, env)
            assert code == 0, f"{where}: exit {code}\n{command.text}\n{out}\n{err}"
            assignments.append(f"{name}={shlex.quote(out)}")
            continue
        if kind == "reader":
            left.append(where)
            continue
        prelude = "set -euo pipefail\n" + "\n".join(assignments) + "\n"
        if kind == "curl":
            script = prelude + text.replace("curl ", "curl -w '\\n%{http_code}' ", 1)
        else:
            script = prelude + _local(text)
        code, out, err = await _bash(script, workdir, env)
        assert code == 0, f"{where}: exit {code}\n{command.text}\n{out}\n{err}"
        if kind == "curl":
            body, _, status_line = out.rpartition("\n")
            status = int(status_line)
            shown = _STATUS.match(command.expect or "")
            if shown:
                assert status == int(shown.group(1)), f"{where}: {status} {body}"
            else:
                assert status < 400, f"{where}: {status} {body}"
            if command.expect and body:
                _check_pairs(where, command.expect, body)
        elif command.expect:
            printed = " ".join(out.split())
            gist = " ".join(command.expect.split("…")[0].split())
            assert gist in printed, f"{where}: the document shows {gist!r}; it printed {out}"
    return left


def _with_commands() -> list[Path]:
    return [p for p in DOCUMENTS if "```sh" in p.read_text(encoding="utf-8")]


@pytest.mark.parametrize("document", _with_commands(), ids=lambda p: p.name)
async def test_walkthrough_works_as_printed_on_a_fresh_install(
    document: Path, app_factory: AppFactory, db_url: str, tmp_path: Path
) -> None:
    walk = parse(await asyncio.to_thread(document.read_text, encoding="utf-8"), document)
    runnable = [c for c in walk.commands if c.kind in ("curl", "callcenter")]
    assert runnable, f"{document.name} has ```sh blocks but nothing this test can run"
    client: TestClient[Any, Any] = await app_factory(
        generic_webhook_secret=SecretStr(GENERIC_SECRET)
    )
    assert client.port is not None
    left = await run_walkthrough(walk, client.port, db_url, tmp_path)
    # What is left to the reader is only what cannot run here: installing, serving,
    # an interactive client, the test suite itself.
    for where in left:
        command = next(c for c in walk.commands if f"{document.name}:{c.line}" == where)
        assert any(
            word in command.text
            for word in (
                "python3 -m venv",
                "./scripts/test",
                "callcenter serve",
                "callcenter demo",
                "-m websockets",
            )
        ), f"{where}: the test does not know how to run {command.text!r}"


def test_the_parser_reads_commands_their_expected_answers_and_what_it_skips() -> None:
    text = """\
Some prose.

```sh
# a comment before anything
A='one two'
curl -s localhost:8080/x -d '{
  "a": 1}'
# -> 422 {"field": "a", "id": 7}
#    {"not": "checked"}
curl -s localhost:8080/y \\
  -H 'x: y'   # a trailing comment
.venv/bin/callcenter agent add ada --queue general
# -> agent 1 ada
CALLCENTER_ARI_URL=http://h:1 \\
  .venv/bin/callcenter serve
.venv/bin/python -m websockets "ws://127.0.0.1:8080/ws/agent?token=x"
```

```ini
curl -s not-a-shell-block
```
"""
    walk = parse(text, Path("doc.md"))
    assert [(c.kind, c.line) for c in walk.commands] == [
        ("assign", 5),
        ("curl", 6),
        ("curl", 10),
        ("callcenter", 12),
        ("reader", 14),
        ("reader", 16),
    ]
    curl = walk.commands[1]
    assert curl.expect == '422 {"field": "a", "id": 7}'
    assert _pairs(curl.expect) == [("field", "a"), ("id", 7)]
    assert walk.commands[2].expect is None
    assert walk.commands[3].expect == "agent 1 ada"
    assert _holds({"call": {"id": 7}}, "id", 7)
    assert not _holds({"call": {"id": 7}}, "id", 1)
    assert not _holds({"ok": 1}, "ok", True)  # true is not 1
