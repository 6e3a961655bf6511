"""The what-if figures as a manager reads them: rich tables for the terminal.

One row per policy and tier, the ``all`` row last in each policy, so the
effect of a policy on a tier reads down a column; a ``±`` follows a figure
when several runs give it an interval. The overtaking check gets its own
line per policy because it is a promise, not a statistic.
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
    for header, _, _ in COLUMNS:
        table.add_column(header, justify="right")
    paired = len(comparison.reports) > 1
    first = comparison.reports[0].policy
    if paired:
        for header, _, _ in VERSUS:
            table.add_column(header.format(first=first), justify="right")
    for n, report in enumerate(comparison.reports):
        for row in report.tiers:
            cells = [_fmt(row.figures[metric], kind) for _, metric, kind in COLUMNS]
            if paired:
                cells += [_signed(row.versus_first.get(metric), kind) for _, metric, kind in VERSUS]
            style = "bold" if row.tier == ALL else None
            table.add_row(report.policy if row.tier == ALL else "", row.tier, *cells, style=style)
        if n < len(comparison.reports) - 1:
            table.add_section()
    return table


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
