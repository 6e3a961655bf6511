"""The timeline's wording and who-ended-it rules, from rows as ``timeline.sql`` gives them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from callcenter.dashboard.timeline import events

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def row(kind: str, after: float, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "at": T0 + timedelta(seconds=after),
        "kind": kind,
        "who": None,
        "agent_id": None,
        "agent_name": None,
        "queue": None,
        "detail": {},
    }
    return base | fields


ARRIVED = row("arrived", 0, queue="general", detail={"tier": "gold", "identified_by": "phone"})


def ended(state: str, reason: str | None, **fields: Any) -> dict[str, Any]:
    return row("ended", 30, queue="general", detail={"state": state, "reason": reason}, **fields)


def test_the_end_says_who_ended_it() -> None:
    hung_up = events([ended("abandoned", "hangup: normal"), ARRIVED])
    assert [e.kind for e in hung_up] == ["arrived", "ended"]
    assert hung_up[0].text == "arrived in general as gold, identified by phone"
    assert (hung_up[1].who, hung_up[1].text) == (
        "caller",
        "the caller hung up while waiting (abandoned)",
    )
    timed_out = events([ARRIVED, ended("transferred", "max_wait")])[1]
    assert timed_out.who == "system" and "maximum wait" in timed_out.text
    by_agent = events([ARRIVED, ended("completed", None, agent_id=7, agent_name="ada")])[1]
    assert (by_agent.who, by_agent.text) == ("agent:ada", "completed by agent ada")
    # A person's end through the API is one event, said with who did it.
    by_person = events(
        [
            ARRIVED,
            row("end_call", 30, who="supervisor:sam", detail={"outcome": "transferred"}),
            ended("transferred", "stuck"),
        ]
    )
    assert [(e.kind, e.who, e.text) for e in by_person[1:]] == [
        ("ended", "supervisor:sam", "ended transferred by supervisor:sam")
    ]


def test_same_instant_rows_keep_the_order_they_happen_in() -> None:
    at = 5
    got = events(
        [
            row("offered", at, agent_id=2, agent_name="bob"),
            row("timeout", at, agent_id=1, agent_name="ada"),
            ARRIVED,
        ]
    )
    assert [(e.kind, e.who) for e in got] == [
        ("arrived", None),
        ("timeout", "agent:ada"),
        ("offered", None),
    ]
    assert got[1].text == "agent ada did not answer in time"


def test_after_a_tier_change_the_arrival_claims_no_tier() -> None:
    got = events([ARRIVED, row("pin_tier", 3, who="supervisor:sam", detail={"tier": "platinum"})])
    assert got[0].text == "arrived in general, identified by phone"
    assert got[1].text == "caller's tier pinned to platinum by supervisor:sam"
