"""Rooms keep to themselves: read from the source, so a stray import fails here, not in review.

* ``runtime`` is a bottom layer: the standard library, asyncpg, config and errors.
* ``agent_assist`` calls the queue's functions, never runs the queue's SQL.
* Inside ``agent_assist`` the desk uses the knowledge, never the other way.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import callcenter

PACKAGE = Path(callcenter.__file__).parent


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_runtime_imports_only_the_bottom_layer() -> None:
    ours = ("callcenter.config", "callcenter.errors")
    for name in _imports(PACKAGE / "runtime.py"):
        top = name.split(".")[0]
        lower = top in sys.stdlib_module_names or top in ("asyncpg", "__future__")
        assert lower or name.startswith(ours), f"runtime.py imports {name}"


def test_agent_assist_runs_no_queue_sql() -> None:
    for path in (PACKAGE / "agent_assist").rglob("*.py"):
        assert "callcenter.queue.sql" not in _imports(path), path


def test_the_knowledge_never_imports_the_desk() -> None:
    for path in (PACKAGE / "agent_assist" / "knowledge").rglob("*.py"):
        desk = [i for i in _imports(path) if i.startswith("callcenter.agent_assist.desk")]
        assert desk == [], path
