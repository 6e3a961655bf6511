"""The package's layers, held by a test: no module imports a higher layer.

DESIGN.md orders the rooms: cli → app → the rooms at the edge (telephony
adapters, agent assist, web) → queue → customers → the plumbing (events,
runtime, db, http, app_keys) → errors, config. An import that runs at
start-up may only go down (or stay inside its own room); imports under
``TYPE_CHECKING`` are for the type checker and do not count. Two checks:
one reads every module's imports, the other imports the low layers in a
fresh interpreter and looks at what got loaded.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "callcenter"

#: The rank of each room; a module may import its own room or a lower rank.
RANKS: dict[str, int] = {
    "config": 0,
    "errors": 0,
    "events": 1,
    "runtime": 1,
    "db": 1,
    "http": 1,
    "app_keys": 1,
    "customers": 2,
    "people": 2,
    "queue": 3,
    "telephony_adapters": 4,
    "agent_assist": 4,
    "dashboard": 4,
    "simulation": 4,
    "web": 4,
    "app": 5,
    "cli": 6,
    "__main__": 6,
    "__init__": 0,
}

#: The rooms at the edge talk to each other only through lower rooms.
EDGE = 4


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _runtime_imports(path: Path, module: str) -> list[tuple[int, str]]:
    """Every callcenter module imported outside ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                for sub in ast.walk(inner):
                    skip.add(id(sub))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("callcenter")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if not base.startswith("callcenter"):
                continue
            if base == "callcenter":
                found += [(node.lineno, f"callcenter.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, base))
    return found


def test_every_room_has_a_rank() -> None:
    rooms = {_room(_module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert rooms <= RANKS.keys(), f"rooms without a layer: {sorted(rooms - RANKS.keys())}"


def test_no_module_imports_a_higher_layer() -> None:
    wrong: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        room = _room(module)
        for line, target in _runtime_imports(path, module):
            other = _room(target)
            if other == room or other == "__init__":
                continue
            upward = RANKS[other] > RANKS[room]
            sideways = RANKS[other] == RANKS[room] == EDGE
            if upward or sideways:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {module} -> {target}")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


LOW = ["callcenter.http.problems", "callcenter.http.routing", "callcenter.events", "callcenter.db"]
HIGH = ("queue", "agent_assist", "telephony_adapters", "customers")


@pytest.mark.parametrize("module", LOW)
def test_importing_a_low_layer_loads_no_room(module: str) -> None:
    probe = (
        f"import json, sys; import {module}; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('callcenter.'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    loaded = json.loads(out)
    rooms = sorted({m for m in loaded if m.split(".")[1] in HIGH})
    assert not rooms, f"importing {module} loaded {rooms}"
