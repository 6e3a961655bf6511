"""Who is served next: the queue policy, as pure functions.

Every waiting call gets a static **service key**, its *virtual arrival time*::

    service_key = enqueued_at - credit(tier) - queue offset

**Where production computes it:** not here. The key that orders the queue
is computed in PostgreSQL, by the SQL function ``queue_service_key`` (created
in ``callcenter/db/migrations/0009_service_key.sql``), which every statement of
``callcenter/queue/queries.sql`` that computes a key calls (``enqueue``,
``set_key``, ``record_gone_call``). ``service_key`` below is
its exact Python twin, held equal by ``tests/integration/test_service_key.py``.
To change the formula, change both in one commit: a new migration that
replaces the function, and ``service_key``. The credit itself (``credit``,
the policies) *is* computed here and passed to those statements.

and the queue serves the smallest key first, ties by real arrival. A valuable
caller is treated as if they had called ``credit`` seconds earlier. Because
every waiting call ages at the same rate, the order changes only on events
(an arrival, an identification, a value change, a supervisor's bump), so the
queue is a plain B-tree index and claiming the head is one indexed statement.

The guarantee (bounded overtaking): with credits in ``[min_credit,
max_credit]``, **no caller is ever overtaken by a caller who arrived more than
``max_credit - min_credit`` seconds after them.** Proof: B overtakes A only if
``B.key < A.key``, i.e. ``B.arrival - B.credit < A.arrival - A.credit``, so
``B.arrival - A.arrival < B.credit - A.credit <= max_credit - min_credit``.
Every caller is therefore served, at the latest, after everyone who was
waiting when they arrived plus everyone who arrived within the spread after
them: nobody starves, whatever the load.

Two named alternatives exist for comparison (the simulator runs all three):

* ``fifo``: every credit 0, served in order of arrival.
* ``strict``: strict priority classes, as a plain priority number does. Each
  tier rank is worth a credit so large that no later arrival of a lower tier
  ever gets ahead. Under overload the lowest tier waits forever; that is the
  starvation the value policy exists to avoid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import StrEnum

#: Default credit in seconds by tier: what a caller of that tier is worth in wait.
DEFAULT_CREDITS: Mapping[str, float] = {
    "platinum": 120.0,
    "gold": 60.0,
    "silver": 20.0,
    "standard": 0.0,
}

#: Credit per tier rank under strict priority: about 100 years, longer than any wait.
STRICT_RANK_CREDIT = 100 * 365 * 24 * 3600.0


class PolicyName(StrEnum):
    value = "value"
    strict = "strict"
    fifo = "fifo"


@dataclass(frozen=True)
class QueuePolicy:
    """How one queue orders its callers.

    ``credits`` maps a tier to seconds of credit; a tier it does not name gets
    ``min_credit``. ``max_credit`` bounds any credit, including a supervisor's
    explicit one, so the overtaking guarantee holds for every call.
    """

    name: PolicyName
    credits: Mapping[str, float]
    tiers: Sequence[str]  # most valuable first; used by the strict policy
    max_credit: float

    @property
    def min_credit(self) -> float:
        return 0.0

    @property
    def overtaking_bound(self) -> float:
        """Seconds: a later caller overtakes an earlier one only if they arrived within this."""
        return self.max_credit - self.min_credit


def value_policy(credits: Mapping[str, float] = DEFAULT_CREDITS) -> QueuePolicy:
    if any(c < 0 for c in credits.values()):
        raise ValueError("credits must not be negative")
    return QueuePolicy(
        name=PolicyName.value,
        credits=dict(credits),
        tiers=sorted(credits, key=lambda t: credits[t], reverse=True),
        max_credit=max(credits.values(), default=0.0),
    )


def fifo_policy() -> QueuePolicy:
    return QueuePolicy(name=PolicyName.fifo, credits={}, tiers=(), max_credit=0.0)


def strict_policy(tiers: Sequence[str]) -> QueuePolicy:
    """Strict priority by tier rank (``tiers`` most valuable first)."""
    n = len(tiers)
    credits = {t: (n - 1 - i) * STRICT_RANK_CREDIT for i, t in enumerate(tiers)}
    return QueuePolicy(
        name=PolicyName.strict,
        credits=credits,
        tiers=tuple(tiers),
        max_credit=max(credits.values(), default=0.0),
    )


def credit(policy: QueuePolicy, tier: str | None, explicit: float | None = None) -> float:
    """Seconds of credit for a caller: an explicit (supervisor's) credit, else the tier's.

    Always within ``[min_credit, max_credit]``.
    """
    raw = explicit if explicit is not None else policy.credits.get(tier or "", policy.min_credit)
    return min(max(raw, policy.min_credit), policy.max_credit)


def service_key(
    enqueued_at: datetime, credit_seconds: float, offset_seconds: float = 0.0
) -> datetime:
    """The virtual arrival time: smaller is served first.

    The exact twin of the SQL function ``queue_service_key`` (migration
    0009), which is what production runs: the credit and the queue's offset
    are added as floats, the sum becomes whole microseconds rounded half to
    even (``make_interval``'s ``rint``; Python's ``round`` on a float does
    the same), and that many microseconds are taken from the arrival.
    ``enqueued_at`` is an aware datetime in UTC, as asyncpg returns a
    ``timestamptz`` (arithmetic on another zone's local time would not be
    PostgreSQL's absolute-time arithmetic across a DST change).
    """
    micros = round((credit_seconds + offset_seconds) * 1_000_000.0)
    return enqueued_at - timedelta(microseconds=micros)


def serve_order(calls: Sequence[tuple[datetime, float, int]]) -> list[int]:
    """Ids of ``(enqueued_at, credit, id)`` calls in the order the queue serves them.

    This is the order the SQL claim uses (``ORDER BY service_key, id``), where
    ids grow with arrival; it exists so the guarantee can be tested in pure code.
    """
    return [cid for _, _, cid in sorted(calls, key=lambda c: (service_key(c[0], c[1]), c[0], c[2]))]


def make_policy(
    name: PolicyName, credits: Mapping[str, float], tiers: Sequence[str]
) -> QueuePolicy:
    """The policy a queue is configured with; empty value credits mean the defaults."""
    if name is PolicyName.fifo:
        return fifo_policy()
    if name is PolicyName.strict:
        return strict_policy(tiers)
    return value_policy(credits or DEFAULT_CREDITS)


def explain_credit(tier: str | None, credit_seconds: float, explicit: bool) -> str:
    """Why a call sits where it does, in one sentence for the agent who is offered it."""
    who = f"{tier} customer" if tier else "unidentified caller"
    if credit_seconds >= STRICT_RANK_CREDIT:
        return f"{who}: strict priority, served before every lower tier"
    if explicit:
        return f"a supervisor gave this call {credit_seconds:g} s of credit"
    if credit_seconds > 0:
        return f"{who}: served as if they had called {credit_seconds:g} s earlier"
    return f"{who}: served in order of arrival"


# -- keeping the place: callbacks and redials ----------------------------------
#
# A callback does not move a caller: the virtual call keeps the waiting row
# and the service key it had, so the claim serves it exactly when it would
# have served the caller holding on, and the overtaking bound above holds
# unchanged. Offering the callback first to valuable tiers (``tiers``) is
# therefore fair in the bound's sense: it changes *how* those callers wait,
# never *when* anyone is served.
#
# A redial within the queue's window resumes the abandoned call's place: it is
# keyed at that call's arrival (``resumed_arrival``) with its credit now, so
# with the same credit it gets the old key exactly. It never gets a better key
# by hanging up: the arrival it is keyed at is the old one, not an earlier one,
# and only a credit that grew (a tier that rose, which moves a waiting call the
# same way) can place it ahead of where it stood.


@dataclass(frozen=True)
class CallbackRule:
    """When a waiting caller is offered a callback.

    ``after_seconds``: the caller's estimated wait must be at least this.
    ``tiers``: only these tiers (``"unknown"`` names unidentified callers);
    None: everyone. ``hours``: local opening hours ``(opens, closes)`` in which
    it is offered (``closes`` before ``opens`` spans midnight); None: always.
    """

    after_seconds: float
    tiers: frozenset[str] | None = None
    hours: tuple[time, time] | None = None


def callback_offered(
    rule: CallbackRule | None, tier: str | None, ewt_seconds: float | None, local: time
) -> bool:
    """Whether a caller still holding is offered a callback now.

    An unknown wait (no basis for an estimate yet) counts as zero: a callback
    is promised only when the wait is known to be long, or the rule asks for
    none (``after_seconds`` 0).
    """
    if rule is None:
        return False
    if rule.tiers is not None and (tier or "unknown") not in rule.tiers:
        return False
    if rule.hours is not None and not within_hours(rule.hours, local):
        return False
    return (ewt_seconds or 0.0) >= rule.after_seconds


def within_hours(hours: tuple[time, time], local: time) -> bool:
    """``local`` falls in ``[opens, closes)``; a span that passes midnight wraps."""
    opens, closes = hours
    if opens <= closes:
        return opens <= local < closes
    return local >= opens or local < closes
