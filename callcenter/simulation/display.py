"""What a run shows in the terminal: a live table while it runs, the summary after."""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from callcenter.simulation.pbx import PbxCall
from callcenter.simulation.summary import Summary
from callcenter.simulation.traffic import Traffic


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:.0f} %"


def _secs(x: float | None) -> str:
    if x is None:
        return "–"
    minutes, seconds = divmod(round(x), 60)
    return f"{minutes}:{seconds:02d}" if minutes else f"{seconds} s"


def live(traffic: Traffic) -> RenderableType:
    """The floor right now, as the PBX and the agents see it."""
    calls = list(traffic.pbx.calls.values())
    now = time.perf_counter()
    waiting = [c for c in calls if c.phase == "waiting"]
    talking = sum(1 for c in calls if c.phase == "talking")
    counts = traffic.pbx.counts
    ledger = traffic.ledger
    elapsed = time.monotonic() - traffic.started
    head = Table.grid(padding=(0, 3))
    head.add_row(
        f"[b]{elapsed:4.0f} s[/b]",
        f"calls in [b]{counts.placed}[/b]",
        f"waiting [b]{len(waiting)}[/b]",
        f"talking [b]{talking}[/b]",
        f"answered [b]{counts.connected}[/b]",
        f"abandoned [b]{counts.abandoned}[/b]",
        f"questions answered [b]{len(ledger.answered)}[/b] skipped {len(ledger.skipped)}",
    )
    table = Table(title="by tier (as the callers feel it)", title_justify="left")
    for name in ("tier", "waiting", "longest now", "answered", "within target", "avg answer"):
        table.add_column(name, justify="left" if name == "tier" else "right")
    for tier in traffic.floor.tiers:
        mine = [c for c in calls if c.tier == tier]
        answered = [c for c in mine if c.connected_at is not None]
        waits = [_waited(c) for c in answered]
        within = sum(
            1 for c, w in zip(answered, waits, strict=True) if w <= traffic.floor.targets[c.queue]
        )
        longest = max((now - c.sent_at for c in waiting if c.tier == tier), default=None)
        table.add_row(
            tier,
            str(sum(1 for c in waiting if c.tier == tier)),
            _secs(longest),
            str(len(answered)),
            _pct(within / len(answered) if answered else None),
            _secs(sum(waits) / len(waits) if waits else None),
        )
    return Group(head, table)


def _waited(call: PbxCall) -> float:
    assert call.connected_at is not None
    return call.connected_at - call.sent_at


def summary(s: Summary) -> RenderableType:
    """The end-of-run figures, from the service's own record of every call."""
    lines = Table.grid(padding=(0, 2))
    lines.add_row(
        "calls",
        f"{s.calls} in {s.seconds:.0f} s ({s.policy} policy): {s.answered} answered, "
        f"{s.abandoned} abandoned, {s.cut_off} still waiting at the end (hung up then), "
        f"{s.transferred} transferred",
    )
    lines.add_row("service level", _pct(s.service_level))
    if s.bound_seconds is None:
        fairness = "strict priority has no bound: a caller waits behind every more valuable one"
    else:
        fairness = (
            f"overtaking bound {s.bound_seconds:.0f} s; callers overtaken beyond it: {s.overtaken}"
        )
    lines.add_row("fairness", fairness)
    lines.add_row(
        "learning",
        f"{s.questions_answered} questions answered, {s.questions_skipped} skipped",
    )
    lines.add_row("value served", f"{s.value_served:,.2f} (net value of the callers answered)")
    lines.add_row(
        "kept places",
        f"{s.callbacks} callbacks taken ({s.callbacks_answered} rung back and answered, "
        f"{s.callbacks_failed} not reached: in abandoned), {s.resumed} redials resumed",
    )
    if s.offer_delay_p50_ms is not None:
        lines.add_row(
            "offer delay",
            f"p50 {s.offer_delay_p50_ms:.0f} ms, p99 {s.offer_delay_p99_ms:.0f} ms "
            "(webhook sent → offer on an idle agent's socket)",
        )
    if s.not_ended:
        lines.add_row("[red]not ended[/red]", f"[red]{s.not_ended} calls[/red]")
    table = Table(title="by tier", title_justify="left")
    for name in (
        "tier",
        "calls",
        "answered",
        "abandoned",
        "service level",
        "avg answer",
        "longest wait",
    ):
        table.add_column(name, justify="left" if name == "tier" else "right")
    for t in s.tiers:
        table.add_row(
            t.tier,
            str(t.calls),
            str(t.answered),
            str(t.abandoned),
            _pct(t.service_level),
            _secs(t.asa_seconds),
            _secs(t.longest_wait_seconds),
        )
    parts: list[RenderableType] = [Text("Summary", style="bold"), lines, table]
    parts.extend(_faults(s.faults))
    return Group(*parts)


def _faults(faults: Sequence[str]) -> list[RenderableType]:
    if not faults:
        return [Text("no faults: every call accounted for, none accepted or connected twice")]
    out: list[RenderableType] = [Text("faults:", style="bold red")]
    out.extend(Text("  " + f, style="red") for f in faults)
    return out
