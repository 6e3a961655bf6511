"""Every statement the service's pooled connections complete, named and counted.

The statement budget (``test_statement_budget.py``) and the wrap-up's unread path
(``test_wrap_up_unread.py``) count round trips with it: a query logger is added
to each connection as a pool opens it, and each statement is named by its
``dir/file:name`` in our ``.sql`` files.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from asyncpg.connection import LoggedQuery

import callcenter
from callcenter.db.sql import parse_queries

#: The longest any step may take before ``StatementLog.until`` says which one hung.
STEP_SECONDS = 10.0


def _statement_names() -> dict[str, str]:
    """Every named statement of the service by its exact text: ``dir/file:name``."""
    root = Path(callcenter.__file__).resolve().parent
    names: dict[str, str] = {}
    for path in sorted(root.rglob("*.sql")):
        if "migrations" in path.parts or path.name == "schema.sql":
            continue
        for name, sql in parse_queries(path.read_text(encoding="utf-8")).items():
            names[sql] = f"{path.parent.name}/{path.stem}:{name}"
    return names


NAMES = _statement_names()

#: What asyncpg asks the first time a connection meets a type (a new pooled connection):
#: once per connection, not per call, so left out of the figures.
INTROSPECTION = (
    "SELECT current_setting('jit')",
    "WITH RECURSIVE typeinfo_tree",
    "SELECT set_config('jit'",
)
INTROSPECTED = "asyncpg: type introspection"


def statement_name(query: str) -> str:
    """Our name for a statement: its ``file:name``, else its first words (``BEGIN``, ...)."""
    text = query.strip()
    named = NAMES.get(text)
    if named is not None:
        return named
    words = " ".join(text.rstrip(";").split())
    if words.startswith("SELECT pg_notify($1, p) FROM unnest"):
        return "events:publish"
    if words.startswith(INTROSPECTION):
        return INTROSPECTED
    if words.startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")):
        return words.rsplit(" ", 1)[0]
    return words if len(words) <= 40 else words[:40] + "…"


@dataclass
class StatementLog:
    """Every statement the service's pooled connections completed, with the step it fell in."""

    step: str = "setup"
    seen: list[tuple[str, str]] = field(default_factory=list)
    #: Where the current run began (the warm-up and the measured call share step names).
    start: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, query: LoggedQuery) -> None:
        self.seen.append((self.step, statement_name(query.query)))
        self._changed.set()

    def begin(self) -> None:
        """A new run: what was counted so far is left out of every figure."""
        self.start = len(self.seen)

    def of(self, step: str) -> Counter[str]:
        """What ran in ``step`` of the current run (asyncpg's type introspection left out)."""
        return Counter(
            name for s, name in self.seen[self.start :] if s == step and name != INTROSPECTED
        )

    def total(self, steps: list[str]) -> int:
        return sum(sum(self.of(s).values()) for s in steps)

    async def until(self, name: str, times: int = 1) -> None:
        """Until ``name`` completed ``times`` times in the current step."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STEP_SECONDS
        while self.of(self.step)[name] < times:
            self._changed.clear()
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(
                    f"step {self.step!r}: {name} not seen {times} times; seen {self.of(self.step)}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    def report(self, steps: list[str]) -> str:
        lines = []
        for step in steps:
            counts = self.of(step)
            detail = ", ".join(f"{n} ×{c}" if c > 1 else n for n, c in counts.items())
            lines.append(f"  {step}: {sum(counts.values())} ({detail})")
        return "\n".join(lines)
