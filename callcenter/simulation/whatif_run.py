"""From what a user typed to a what-if run: checks, the plan, the JSON.

The command line stays a thin shell over this, so every refusal (a zero
rate, an unknown policy, credits out of order) is a ``WhatIfError`` whose
message starts with the option's name, testable without a terminal, and
the JSON a script reads is built in one place.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from callcenter.queue.models import CallbackRule
from callcenter.queue.policy import QueuePolicy, fifo_policy
from callcenter.simulation import erlang
from callcenter.simulation.des import Callbacks, Outcome
from callcenter.simulation.history import (
    HistoryCall,
    mean_patience,
    parse_since,
    peak_agents,
    replay,
    tiers_of,
)
from callcenter.simulation.staffing import (
    Level,
    Target,
    erlang_level,
    parse_target,
    simulated_agents,
    simulated_level,
)
from callcenter.simulation.whatif import Comparison, WhatIfError, compare, parse_credits, policies
from callcenter.simulation.workload import DEFAULT_TIER_MIX, Traffic, Workload, synthetic

#: Mean patience used when the load is more than the agents can ever serve
#: and the user asked for callers who never hang up: the queue would grow
#: without end and no figure would settle.
OVERLOAD_PATIENCE = 90.0


@dataclass(frozen=True)
class SimulateOptions:
    rate_per_hour: float
    aht: float
    agents: int | None
    patience: float
    hours: float
    policies: Sequence[str]
    credits: str | None
    target: str
    seed: int
    runs: int
    handle_cv: float | None = None
    callbacks: CallbackOptions | None = None


@dataclass(frozen=True)
class CallbackOptions:
    """What the user asked of callbacks; None where an option was not given.

    Callbacks are on only with ``after`` (``--callback-after``); the other
    options refine them and are refused without it.
    """

    after: float | None = None
    take: float | None = None
    answer: float | None = None
    attempts: int | None = None
    retry: float | None = None
    ring: float | None = None
    tiers: str | None = None
    compare: bool = False


#: Defaults of the callback model: production's rule defaults (attempts, retry)
#: and ring timeout (``CALLCENTER_CALLBACK_RING_SECONDS``); the shares are guesses
#: a manager should replace with their own line's.
CALLBACK_TAKE = 0.5
CALLBACK_ANSWER = 0.8
CALLBACK_RING = 30.0
#: Seconds an answered ring holds the agent before the caller picks up (fixed).
CALLBACK_PICKUP = 10.0

#: The production rule's fields, by the option that sets them.
_RULE_OPTIONS = {
    "after_seconds": "--callback-after",
    "attempts": "--callback-attempts",
    "retry_seconds": "--callback-retry",
    "tiers": "--callback-tiers",
}


def callback_model(options: CallbackOptions | None, tiers: Sequence[str]) -> Callbacks | None:
    """The checked callback model, None when off; a bad option is a ``WhatIfError`` naming it.

    The rule is built as a queue's configuration (``queue.models.CallbackRule``,
    so the same bounds as ``PUT /api/queues/{queue}``) and turned into the pure
    rule production applies (``CallbackRule.rule()``).
    """
    if options is None or options.after is None:
        given = options or CallbackOptions()
        for name, value in (
            ("--callback-take", given.take),
            ("--callback-answer", given.answer),
            ("--callback-attempts", given.attempts),
            ("--callback-retry", given.retry),
            ("--callback-ring", given.ring),
            ("--callback-tiers", given.tiers),
            ("--compare-callbacks", given.compare or None),
        ):
            if value is not None:
                raise WhatIfError(f"{name}: callbacks are off; turn them on with --callback-after")
        return None
    for name, number in (
        ("--callback-after", options.after),
        ("--callback-retry", options.retry),
        ("--callback-ring", options.ring),
    ):
        if number is not None and math.isnan(number):
            raise WhatIfError(f"{name}: must be a number of seconds, not nan")
    take = CALLBACK_TAKE if options.take is None else options.take
    answer = CALLBACK_ANSWER if options.answer is None else options.answer
    for name, share in (("--callback-take", take), ("--callback-answer", answer)):
        if not 0.0 <= share <= 1.0:
            raise WhatIfError(f"{name}: a share from 0 to 1 (e.g. 0.4), not {share:g}")
    ring = CALLBACK_RING if options.ring is None else options.ring
    if not 5.0 <= ring <= 120.0:
        raise WhatIfError(
            f"--callback-ring: from 5 to 120 seconds, as the service allows, not {ring:g}"
        )
    named: list[str] | None = None
    if options.tiers is not None:
        named = [t.strip() for t in options.tiers.split(",")]
        unknown = [t for t in named if t not in tiers]
        if unknown:
            raise WhatIfError(
                f"--callback-tiers: unknown tier {unknown[0]!r}; tiers are {', '.join(tiers)}"
            )
    config: dict[str, Any] = {"after_seconds": options.after, "tiers": named}
    if options.attempts is not None:
        config["attempts"] = options.attempts
    if options.retry is not None:
        config["retry_seconds"] = options.retry
    try:
        queue_rule = CallbackRule(**config)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = _RULE_OPTIONS.get(str(error["loc"][0]), "--callback-after")
        raise WhatIfError(f"{name}: {error['msg']}") from None
    return Callbacks(
        rule=queue_rule.rule(),
        take=take,
        answer=answer,
        attempts=queue_rule.attempts,
        retry_seconds=queue_rule.retry_seconds,
        ring_seconds=ring,
        pickup_seconds=min(CALLBACK_PICKUP, ring),
    )


@dataclass(frozen=True)
class Plan:
    traffic: Traffic
    agents: int
    target: Target
    policies: list[QueuePolicy]
    seed: int
    runs: int
    notes: list[str] = field(default_factory=list)  # said before the figures (overload)
    callbacks: Callbacks | None = None
    compare_callbacks: bool = False


def _positive(name: str, value: float) -> None:
    if not value > 0 or math.isnan(value):
        raise WhatIfError(f"{name}: must be more than 0, not {value:g}")


def target_option(text: str) -> Target:
    try:
        return parse_target(text)
    except ValueError as exc:
        raise WhatIfError(f"--target: {exc}") from None


def plan(options: SimulateOptions) -> Plan:
    """The checked run: every bad option is a ``WhatIfError`` naming it."""
    _positive("--rate", options.rate_per_hour)
    _positive("--aht", options.aht)
    _positive("--hours", options.hours)
    _positive("--patience", options.patience)
    if options.runs < 1:
        raise WhatIfError(f"--runs: must be at least 1, not {options.runs}")
    if options.handle_cv is not None and not options.handle_cv > 0:
        raise WhatIfError(f"--handle-cv: must be more than 0, not {options.handle_cv:g}")
    target = target_option(options.target)
    tiers = [name for name, _ in DEFAULT_TIER_MIX]
    credits = parse_credits(options.credits) if options.credits else None
    chosen = policies(options.policies, tiers, credits)
    callbacks = callback_model(options.callbacks, tiers)
    rate = options.rate_per_hour / 3600.0
    load = rate * options.aht
    agents = options.agents
    if agents is None:
        agents = erlang.agents_needed(rate, options.aht, target.share, target.seconds)
    elif agents < 1:
        raise WhatIfError(f"--agents: must be at least 1, not {agents}")
    notes: list[str] = []
    patience = options.patience
    if load >= agents:
        notes.append(
            f"overload: {load:.1f} Erlangs offered to {agents} agents (occupancy would be "
            f"{load / agents:.0%}); the queue grows until callers hang up"
        )
        if math.isinf(patience):
            patience = OVERLOAD_PATIENCE
            notes.append(f"running with callers who hang up after {patience:g} s on average")
    traffic = Traffic(
        rate=rate,
        aht=options.aht,
        seconds=options.hours * 3600.0,
        patience=patience,
        handle_cv=options.handle_cv,
    )
    return Plan(
        traffic,
        agents,
        target,
        chosen,
        options.seed,
        options.runs,
        notes,
        callbacks=callbacks,
        compare_callbacks=callbacks is not None
        and bool(options.callbacks and options.callbacks.compare),
    )


def workloads(p: Plan) -> list[Workload]:
    """One workload per run, seeds ``seed`` .. ``seed + runs - 1``."""
    return [synthetic(p.traffic, p.seed + r) for r in range(p.runs)]


def _some_calls(loads: Sequence[Workload], rate_per_hour: float, hours: float) -> None:
    """A run without a single call has no figures (and no agent count meets a target)."""
    if any(len(w) == 0 for w in loads):
        raise WhatIfError(
            f"--hours: no call arrives in {hours:g} h at {rate_per_hour:g} calls/h; "
            "simulate longer or at a higher rate"
        )


def simulate(p: Plan) -> tuple[Comparison, list[Workload], list[list[Outcome]]]:
    loads = workloads(p)
    _some_calls(loads, p.traffic.rate * 3600.0, p.traffic.seconds / 3600.0)
    comparison, outcomes = compare(
        loads, p.policies, p.agents, p.target.seconds, p.callbacks, p.compare_callbacks
    )
    return comparison, loads, outcomes


def erlang_reference(p: Plan) -> dict[str, Any]:
    """What Erlang C predicts for the same rate, handle time and agents (fifo, nobody hangs up)."""
    load = p.traffic.rate * p.traffic.aht
    asa = erlang.average_speed_of_answer(p.agents, load, p.traffic.aht)
    return {
        "load_erlangs": load,
        "wait_probability": erlang.wait_probability(p.agents, load),
        "asa": None if math.isinf(asa) else asa,
        "service_level": erlang.service_level(p.agents, load, p.traffic.aht, p.target.seconds),
    }


def simulate_json(p: Plan, comparison: Comparison) -> dict[str, Any]:
    return {
        "scenario": {
            "rate_per_hour": p.traffic.rate * 3600.0,
            "aht": p.traffic.aht,
            "hours": p.traffic.seconds / 3600.0,
            "patience": None if math.isinf(p.traffic.patience) else p.traffic.patience,
            "handle": "exponential"
            if p.traffic.handle_cv is None
            else f"lognormal cv {p.traffic.handle_cv:g}",
            "agents": p.agents,
            "target": str(p.target),
            "seed": p.seed,
            "runs": p.runs,
            "tier_mix": dict(p.traffic.tier_mix),
        },
        "notes": p.notes,
        "erlang_c": erlang_reference(p),
        **comparison.as_json(),
    }


@dataclass(frozen=True)
class Staffing:
    rate_per_hour: float
    aht: float
    target: Target
    patience: float
    erlang_agents: int
    simulated_agents: int
    erlang_rows: list[Level]
    simulated_rows: list[Level]

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["target"] = str(self.target)
        data["patience"] = None if math.isinf(self.patience) else self.patience
        return data


def staffing(
    rate_per_hour: float,
    aht: float,
    target_text: str,
    patience: float,
    hours: float,
    seed: int,
    runs: int,
) -> Staffing:
    """Erlang C's agent count and the simulation's (fifo, with abandonment) for a target."""
    _positive("--rate", rate_per_hour)
    _positive("--aht", aht)
    _positive("--patience", patience)
    _positive("--hours", hours)
    if runs < 1:
        raise WhatIfError(f"--runs: must be at least 1, not {runs}")
    target = target_option(target_text)
    rate = rate_per_hour / 3600.0
    by_erlang = erlang.agents_needed(rate, aht, target.share, target.seconds)
    traffic = Traffic(rate=rate, aht=aht, seconds=hours * 3600.0, patience=patience)
    loads = [synthetic(traffic, seed + r) for r in range(runs)]
    _some_calls(loads, rate_per_hour, hours)
    found, tried = simulated_agents(loads, fifo_policy(), target, by_erlang)
    low = min(found.agents, by_erlang) - 1
    high = max(found.agents, by_erlang) + 1
    counts = range(max(1, low), high + 1)
    for c in counts:
        if c not in tried:
            tried[c] = simulated_level(loads, fifo_policy(), c, target)
    return Staffing(
        rate_per_hour=rate_per_hour,
        aht=aht,
        target=target,
        patience=patience,
        erlang_agents=by_erlang,
        simulated_agents=found.agents,
        erlang_rows=[erlang_level(rate, aht, c, target) for c in counts],
        simulated_rows=[tried[c] for c in counts],
    )


@dataclass(frozen=True)
class HistoryPlan:
    calls: list[HistoryCall]
    tiers: tuple[str, ...]
    since: str
    queue: str | None
    agents: int
    target: Target
    policies: list[QueuePolicy]
    seed: int
    runs: int
    notes: list[str] = field(default_factory=list)
    callbacks: Callbacks | None = None
    compare_callbacks: bool = False


def since_option(text: str) -> timedelta:
    try:
        return parse_since(text)
    except ValueError as exc:
        raise WhatIfError(f"--since: {exc}") from None


def history_plan(
    calls: list[HistoryCall],
    known_tiers: Sequence[str],
    *,
    since: str,
    queue: str | None,
    agents: int | None,
    policy_names: Sequence[str],
    credits: str | None,
    target: str,
    seed: int,
    runs: int,
    queue_credits: Mapping[str, float] | None = None,
    callbacks: CallbackOptions | None = None,
) -> HistoryPlan:
    """The checked replay of ``calls``; an empty window is a ``WhatIfError`` naming ``--since``.

    ``queue_credits`` (the replayed queue's configured credits) stand in for
    ``--credits`` when it is not given, so "value" means what the queue would run.
    """
    if not calls:
        where = f" in queue {queue!r}" if queue else ""
        raise WhatIfError(f"--since: no finished calls in the last {since}{where}")
    if runs < 1:
        raise WhatIfError(f"--runs: must be at least 1, not {runs}")
    if agents is not None and agents < 1:
        raise WhatIfError(f"--agents: must be at least 1, not {agents}")
    checked_target = target_option(target)
    tiers = tiers_of(calls, known_tiers)
    given = parse_credits(credits) if credits else (dict(queue_credits or {}) or None)
    chosen = policies(policy_names, tiers, given)
    model = callback_model(callbacks, tiers)
    peak = peak_agents(calls)
    answered = sum(1 for c in calls if c.connected_at is not None)
    patience = mean_patience(calls)
    shown = "nobody hung up" if math.isinf(patience) else f"mean patience {patience:.0f} s"
    notes = [
        f"replaying {len(calls)} calls of the last {since}"
        + (f" in {queue}" if queue else "")
        + f": {answered} answered, {len(calls) - answered} not; {shown}; "
        f"at most {peak} agents were busy at once"
    ]
    return HistoryPlan(
        calls=calls,
        tiers=tiers,
        since=since,
        queue=queue,
        agents=agents if agents is not None else peak,
        target=checked_target,
        policies=chosen,
        seed=seed,
        runs=runs,
        notes=notes,
        callbacks=model,
        compare_callbacks=model is not None and bool(callbacks and callbacks.compare),
    )


def replay_history(hp: HistoryPlan) -> tuple[Comparison, list[Workload], list[list[Outcome]]]:
    loads = [replay(hp.calls, hp.tiers, hp.seed + r) for r in range(hp.runs)]
    comparison, outcomes = compare(
        loads, hp.policies, hp.agents, hp.target.seconds, hp.callbacks, hp.compare_callbacks
    )
    return comparison, loads, outcomes


def history_json(hp: HistoryPlan, comparison: Comparison) -> dict[str, Any]:
    patience = mean_patience(hp.calls)
    return {
        "scenario": {
            "from_history": True,
            "since": hp.since,
            "queue": hp.queue,
            "calls": len(hp.calls),
            "first_arrival": hp.calls[0].enqueued_at.isoformat(),
            "last_arrival": hp.calls[-1].enqueued_at.isoformat(),
            "mean_patience": None if math.isinf(patience) else patience,
            "agents": hp.agents,
            "peak_busy_agents": peak_agents(hp.calls),
            "target": str(hp.target),
            "seed": hp.seed,
            "runs": hp.runs,
        },
        "notes": hp.notes,
        **comparison.as_json(),
    }
