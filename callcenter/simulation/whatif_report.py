"""The what-if figures as a manager reads them: rich tables for the terminal.

One row per policy and tier, the ``all`` row last in each policy, so the
effect of a policy on a tier reads down a column; a ``±`` follows a figure
when several runs give it an interval. The overtaking check gets its own
line per policy because it is a promise, not a statistic.

With callbacks the policy table gains their three counts; with
``--compare-callbacks`` the table is instead *without / with callbacks*
side by side for each policy and tier, and the difference taken run by run.
"""

from __future__ import annotations

from rich.table import Table

from callcenter.simulation.confidence import Estimate
from callcenter.simulation.figures import ALL
from callcenter.simulation.staffing import Level, Target
from callcenter.simulation.whatif import Comparison, PolicyReport


def _fmt(e: Estimate | None, kind: str) -> str:
    if e is None:
        return "-"
    scale, unit, digits = {
        "share": (100.0, "%", 1),
        "seconds": (1.0, "", 1),
        "count": (1.0, "", 0),
        "money": (1.0, "", 0),
    }[kind]
    text = f"{e.mean * scale:,.{digits}f}{unit}"
    if e.half_width is not None:
        text += f" ±{e.half_width * scale:,.{digits}f}"
    return text


#: (column header, metric, kind) in table order.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("calls", "calls", "count"),
    ("answered", "answered", "count"),
    ("abandon", "abandon_rate", "share"),
    ("ASA s", "asa", "seconds"),
    ("SL", "service_level", "share"),
    ("p50 s", "wait_p50", "seconds"),
    ("p95 s", "wait_p95", "seconds"),
    ("max s", "wait_max", "seconds"),
    ("value answered", "value_answered", "money"),
    ("value abandoned", "value_abandoned", "money"),
)


#: (column header, paired metric, kind): the difference from the first policy.
VERSUS: tuple[tuple[str, str, str], ...] = (
    ("ASA vs {first}", "asa", "seconds"),
    ("SL vs {first}", "service_level", "share"),
)


#: The columns a run with callbacks adds after "abandon".
CALLBACK_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("callbacks", "callbacks", "count"),
    ("on ring", "answered_on_ring", "count"),
    ("cb failed", "callback_failed", "count"),
)


def _signed(e: Estimate | None, kind: str) -> str:
    if e is None:
        return ""
    scale, unit = (100.0, " pt") if kind == "share" else (1.0, " s")
    text = f"{e.mean * scale:+.1f}{unit}"
    if e.half_width is not None:
        text += f" ±{e.half_width * scale:.1f}"
    return text


def comparison_table(comparison: Comparison, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("policy")
    table.add_column("tier")
    columns = list(COLUMNS)
    if comparison.callbacks is not None:
        at = next(n for n, c in enumerate(columns) if c[1] == "abandon_rate") + 1
        columns[at:at] = CALLBACK_COLUMNS
    for header, _, _ in columns:
        table.add_column(header, justify="right")
    paired = len(comparison.reports) > 1
    first = comparison.reports[0].policy
    if paired:
        for header, _, _ in VERSUS:
            table.add_column(header.format(first=first), justify="right")
    for n, report in enumerate(comparison.reports):
        for row in report.tiers:
            cells = [_fmt(row.figures[metric], kind) for _, metric, kind in columns]
            if paired:
                cells += [_signed(row.versus_first.get(metric), kind) for _, metric, kind in VERSUS]
            style = "bold" if row.tier == ALL else None
            table.add_row(report.policy if row.tier == ALL else "", row.tier, *cells, style=style)
        if n < len(comparison.reports) - 1:
            table.add_section()
    return table


def callback_effect_table(comparison: Comparison, title: str) -> Table:
    """Each policy and tier without and with callbacks, on the same calls.

    The "with" figures are the ones the run measured with callbacks; the
    difference columns (Δ) are taken run by run before averaging, so their
    interval is callbacks' effect alone. "lost" is the callers never
    answered: those who hung up holding, and the callbacks that failed.
    """
    without = comparison.without_callbacks
    if without is None:
        raise ValueError("a comparison run without --compare-callbacks")
    table = Table(title=title, title_justify="left")
    for header in (
        "policy",
        "tier",
        "calls",
        "callbacks",
        "on ring",
        "cb failed",
        "abandon without",
        "abandon with",
        "lost Δ",
        "SL without",
        "SL with",
        "SL Δ",
        "ASA s without",
        "ASA s with",
        "ring agent-h",
    ):
        table.add_column(header, justify="left" if header in ("policy", "tier") else "right")
    for n, (report, plain) in enumerate(zip(comparison.reports, without, strict=True)):
        for row, base in zip(report.tiers, plain.tiers, strict=True):
            f, b, d = row.figures, base.figures, row.versus_without_callbacks
            ring = f["ring_agent_seconds"]
            hours = (
                None
                if ring is None
                else Estimate(
                    ring.mean / 3600.0,
                    None if ring.half_width is None else ring.half_width / 3600.0,
                )
            )
            table.add_row(
                report.policy if row.tier == ALL else "",
                row.tier,
                _fmt(f["calls"], "count"),
                _fmt(f["callbacks"], "count"),
                _fmt(f["answered_on_ring"], "count"),
                _fmt(f["callback_failed"], "count"),
                _fmt(b["abandon_rate"], "share"),
                _fmt(f["abandon_rate"], "share"),
                _signed(d.get("lost_rate"), "share"),
                _fmt(b["service_level"], "share"),
                _fmt(f["service_level"], "share"),
                _signed(d.get("service_level"), "share"),
                _fmt(b["asa"], "seconds"),
                _fmt(f["asa"], "seconds"),
                _fmt(hours, "seconds"),
                style="bold" if row.tier == ALL else None,
            )
        if n < len(comparison.reports) - 1:
            table.add_section()
    return table


def callback_line(comparison: Comparison) -> str | None:
    """The callback model of the run, in one line (None without callbacks)."""
    cb = comparison.callbacks
    if cb is None:
        return None
    who = "every tier" if cb["tiers"] is None else ", ".join(cb["tiers"])
    return (
        f"callbacks: offered to {who} when the estimated wait at arrival is at least "
        f"{cb['after_seconds']:g} s, taken by {cb['take']:.0%}, rings answered "
        f"{cb['answer']:.0%}, {cb['attempts']} attempt(s) {cb['retry_seconds']:g} s apart; "
        f"a ring holds the agent {cb['pickup_seconds']:g} s when answered, "
        f"{cb['ring_seconds']:g} s when not"
    )


def bound_line(report: PolicyReport) -> str:
    """The overtaking promise and what the runs saw, in one line."""
    seen = f"largest overtaking {report.max_overtaking:.1f} s"
    if report.policy == "strict":
        return f"{report.policy}: {seen}; no bound (strict priority can starve a tier)"
    verdict = "held" if report.bound_held else "BROKEN"
    return f"{report.policy}: {seen}, bound {report.overtaking_bound:g} s: {verdict}"


def staffing_table(
    target: Target, erlang_rows: list[Level], simulated_rows: list[Level], title: str
) -> Table:
    """Agent counts around both answers, Erlang C's figures next to the simulation's.

    Where the load reaches the agents Erlang C has no answer (its queue grows
    for ever), so the row says "overload" while the simulation, whose callers
    hang up, still gives figures.
    """
    table = Table(title=title, title_justify="left")
    for header in ("agents", "Erlang C SL", "Erlang C ASA s", "simulated SL", "ASA s", "abandon"):
        table.add_column(header, justify="right")
    sim = {level.agents: level for level in simulated_rows}
    for e in erlang_rows:
        s = sim.get(e.agents)
        table.add_row(
            str(e.agents),
            "overload" if e.asa is None else _mark(e.service_level, target.share),
            "-" if e.asa is None else f"{e.asa:.1f}",
            "-" if s is None else _mark(s.service_level, target.share),
            "-" if s is None or s.asa is None else f"{s.asa:.1f}",
            "-" if s is None else f"{s.abandon_rate * 100:.1f}%",
        )
    return table


def _mark(level: float, share: float) -> str:
    text = f"{level * 100:.1f}%"
    return f"[green]{text}[/green]" if level >= share else text
