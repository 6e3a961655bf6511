"""A call's timeline: what happened to it, in order, and who did it.

Built from what the database already keeps, in one statement
(``timeline.sql``): the call's row (arrival, end, wrap-up), its offers and
how each ended (``call_offers``), the action log (bumps, moves, ends from the
API, an agent forced offline while ringing with it: migration 0015), its
caller's tier pins while it was in the queue (``customer_audit``), the
learning answer and the release at the telephony peer. No event store of its
own: the rows that make the figures are the rows that tell the story, so the
two cannot disagree.

``events`` is pure: rows in, sentences out, so the wording and the rules for
"who ended it" are tested without a database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from callcenter.db.pool import Conn
from callcenter.db.sql import load_queries
from callcenter.errors import NotFound
from callcenter.queue.calls import CallDesk
from callcenter.queue.models import Call

T = load_queries("callcenter.dashboard", "timeline.sql")

#: Same-instant rows in the order they happen (an offer ends before the next begins).
_ORDER = {
    "arrived": 0,
    "resumed": 0,
    "callback_requested": 1,
    "identify_call": 1,
    "pin_tier": 2,
    "unpin_tier": 2,
    "bump_call": 3,
    "unbump_call": 3,
    "move_call": 3,
    "accepted": 4,
    "rejected": 4,
    "timeout": 4,
    "withdrawn": 4,
    "force_offline": 5,
    "offered": 6,
    "callback_rang": 6,
    "end_call": 7,
    "ended": 7,
    "learning": 8,
    "wrapped_up": 9,
    "released": 10,
}

#: How the caller was recognised at arrival (``identity.recognised_by``), as said here.
_IDENTIFIED = {
    "phone": "identified by phone",
    "customer_number": "identified by customer number",
    "withheld": "number withheld, not identified",
    "unknown": "new number, not identified",
    "pending": "typed number waiting for the agent's check",
    "conflict": "phone and typed number disagree",
    "multiple": "phone shared by several customers",
}

#: Events after which the call's tier may differ from the one it arrived with.
_RETIER = frozenset({"pin_tier", "unpin_tier", "identify_call"})

#: How an end reason set by the service itself reads (the peer's hang-up starts "hangup").
_SYSTEM_ENDS = {
    "max_wait": "the queue's maximum wait passed",
    "connect_failed": "the telephony peer could not connect it",
    "callback_failed": "nobody answered its callback",
    "rang_again": "the caller rang in again while waiting for the callback; the new call "
    "took its place",
}

#: How a ring of a callback ended (``callback_attempts.result``; null: still ringing).
_RINGS = {
    "answered": "the caller answered",
    "no_answer": "nobody answered",
    "failed": "it could not ring",
    "cancelled": "called off",
    None: "ringing",
}


class TimelineEvent(BaseModel):
    at: datetime
    kind: str = Field(
        description="arrived, offered, accepted, rejected, timeout, withdrawn, bump_call, "
        "unbump_call, move_call, pin_tier, unpin_tier, force_offline, identify_call, ended, "
        "learning, wrapped_up, released, resumed, callback_requested, callback_rang"
    )
    who: str | None = Field(
        description="Who did it: a person's or token's role:name (from the session, never "
        "typed), agent:NAME, 'caller' (hung up), 'system' (a clock); null when nobody acted."
    )
    agent_id: int | None = None
    queue: str | None = None
    text: str = Field(description="The event as the dashboard shows it.")
    detail: dict[str, Any] = Field(default_factory=dict)


class Timeline(BaseModel):
    call: Call
    events: list[TimelineEvent] = Field(description="Oldest first.")


def _agent(row: Mapping[str, Any]) -> str:
    name = row["agent_name"]
    return f"agent {name}" if name else f"agent {row['agent_id']}"


def _seconds(value: Any) -> str:
    return f"{float(value):g} s"


def _ended(row: Mapping[str, Any], ender: Mapping[str, Any] | None) -> tuple[str | None, str]:
    """Who ended the call and how it reads: an end from the API names its principal;
    otherwise the end reason (the peer's hang-up, a clock) or the agent says it."""
    detail = row["detail"]
    state, reason = detail.get("state"), detail.get("reason") or ""
    if ender is not None:
        return ender["who"], f"ended {state} by {ender['who']}"
    if reason.startswith("hangup"):
        if state == "abandoned":
            return "caller", "the caller hung up while waiting (abandoned)"
        return "caller", f"the call ended at the telephony peer ({state})"
    if reason in _SYSTEM_ENDS:
        return "system", f"ended {state}: {_SYSTEM_ENDS[reason]}"
    if state == "completed" and row["agent_id"] is not None:
        return f"agent:{row['agent_name']}", f"completed by {_agent(row)}"
    return None, f"ended {state}" + (f" ({reason})" if reason else "")


def _sentence(row: Mapping[str, Any]) -> str:
    kind, detail, who = row["kind"], row["detail"], row["who"]
    if kind == "arrived":
        tier = f" as {detail.get('tier') or 'unknown'}" if "tier" in detail else ""
        how = _IDENTIFIED.get(detail.get("identified_by") or "", "not identified")
        return f"arrived in {row['queue']}{tier}, {how}"
    if kind == "offered":
        return f"offered to {_agent(row)}"
    if kind == "accepted":
        return f"accepted by {_agent(row)}"
    if kind == "rejected":
        return f"rejected by {_agent(row)}"
    if kind == "timeout":
        return f"{_agent(row)} did not answer in time"
    if kind == "withdrawn":
        return f"offer to {_agent(row)} withdrawn"
    if kind == "bump_call":
        return f"bumped to {_seconds(detail.get('credit_seconds', 0))} of credit by {who}"
    if kind == "unbump_call":
        return f"back to its tier's credit by {who}"
    if kind == "move_call":
        return f"moved from {detail.get('from_queue')} to {row['queue']} by {who}"
    if kind == "pin_tier":
        return f"caller's tier pinned to {detail.get('tier')} by {who}"
    if kind == "unpin_tier":
        return f"caller's tier unpinned by {who}"
    if kind == "force_offline":
        return f"{_agent(row)} forced offline by {who}; the offer went back"
    if kind == "identify_call":
        return f"identified again by customer number by {who}"
    if kind == "learning":
        question = detail.get("question")
        how = "skipped" if detail.get("skipped") else "answered"
        return f"learning question {question} {how}"
    if kind == "wrapped_up":
        return f"wrap-up done by {_agent(row)}"
    if kind == "released":
        return "the caller's line was let go at the telephony peer"
    if kind == "resumed":
        waited = detail.get("waited_before_seconds") or 0
        return (
            f"called back after a drop (waited {_seconds(waited)} before): "
            f"resumed the place of call {detail.get('call_id')}"
        )
    if kind == "callback_requested":
        number = detail.get("number")
        return f"the caller took a callback to {number} and hung up, keeping the place"
    if kind == "callback_rang":
        how = _RINGS.get(detail.get("result"), str(detail.get("result")))
        return f"rang the caller back at {detail.get('number')} for {_agent(row)}: {how}"
    return str(kind).replace("_", " ") + (f" by {who}" if who else "")


def events(rows: Iterable[Mapping[str, Any]]) -> list[TimelineEvent]:
    """The timeline from the rows of ``timeline.sql``, oldest first.

    An ``end_call`` entry (a person ended it through the API) and the call's
    own end are one event: the end, said with who did it.
    """
    ordered = sorted(rows, key=lambda r: (r["at"], _ORDER.get(r["kind"], 5)))
    ender = next((r for r in ordered if r["kind"] == "end_call"), None)
    # The call keeps its tier now, not the one it arrived with: after a change, the
    # arrival does not claim one.
    retiered = any(r["kind"] in _RETIER for r in ordered)
    out: list[TimelineEvent] = []
    for r in ordered:
        if r["kind"] == "end_call":
            continue
        if r["kind"] == "arrived" and retiered:
            r = {**r, "detail": {k: v for k, v in r["detail"].items() if k != "tier"}}
        who = r["who"]
        if r["kind"] == "ended":
            who, text = _ended(r, ender)
        elif r["kind"] in ("accepted", "rejected", "timeout", "learning", "wrapped_up"):
            who = f"agent:{r['agent_name']}" if r["agent_name"] else None
            text = _sentence(r)
        else:
            text = _sentence(r)
        out.append(
            TimelineEvent(
                at=r["at"],
                kind=r["kind"],
                who=who,
                agent_id=r["agent_id"],
                queue=r["queue"],
                text=text,
                detail=dict(r["detail"] or {}),
            )
        )
    return out


async def read(conn: Conn, desk: CallDesk, call_id: int) -> Timeline:
    """The call (404 naming ``call_id`` when there is none) and its events."""
    try:
        call = await desk.get(conn, call_id)
    except NotFound:
        raise NotFound(f"no call with id {call_id}", field="call_id") from None
    rows = await conn.fetch(T["timeline"], call_id)
    return Timeline(call=call, events=events(rows))
