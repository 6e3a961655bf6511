"""The callback rule (pure), the queue config that holds it, and which numbers may be rung."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest
from pydantic import ValidationError

from callcenter.errors import Unprocessable
from callcenter.queue.models import CallbackRule as RuleConfig
from callcenter.queue.policy import (
    CallbackRule,
    callback_offered,
    within_hours,
)
from callcenter.telephony_adapters.dialable import callback_number

NOON = time(12, 0)


def test_no_rule_offers_nothing_and_the_threshold_is_on_the_estimated_wait() -> None:
    assert not callback_offered(None, "gold", 999.0, NOON)
    rule = CallbackRule(after_seconds=60)
    assert not callback_offered(rule, "gold", 59.9, NOON)
    assert callback_offered(rule, "gold", 60.0, NOON)
    # No basis for an estimate yet: not known to be long, so not offered...
    assert not callback_offered(rule, "gold", None, NOON)
    # ...unless the rule asks for no wait at all.
    assert callback_offered(CallbackRule(after_seconds=0), "gold", None, NOON)


def test_tiers_limit_who_is_offered_and_unknown_names_unidentified_callers() -> None:
    rule = CallbackRule(after_seconds=0, tiers=frozenset({"platinum", "unknown"}))
    assert callback_offered(rule, "platinum", 0.0, NOON)
    assert not callback_offered(rule, "standard", 0.0, NOON)
    assert callback_offered(rule, None, 0.0, NOON)


def test_opening_hours_and_a_span_across_midnight() -> None:
    day = (time(8, 0), time(20, 0))
    assert within_hours(day, time(8, 0)) and within_hours(day, time(19, 59))
    assert not within_hours(day, time(20, 0)) and not within_hours(day, time(7, 59))
    night = (time(22, 0), time(6, 0))
    assert within_hours(night, time(23, 30)) and within_hours(night, time(5, 59))
    assert not within_hours(night, time(12, 0))
    rule = CallbackRule(after_seconds=0, hours=day)
    assert not callback_offered(rule, "gold", 0.0, time(21, 0))


def test_the_config_reads_hours_in_its_time_zone_and_refuses_bad_ones() -> None:
    config = RuleConfig(after_seconds=30, hours="09:00-17:00", timezone="Europe/Berlin")
    rule = config.rule()
    assert rule.hours == (time(9, 0), time(17, 0)) and rule.after_seconds == 30
    # 07:30 UTC in December is 08:30 in Berlin: still closed.
    assert config.local_time(datetime(2026, 12, 4, 7, 30, tzinfo=UTC)) == time(8, 30)
    for bad in (
        {"hours": "9-17"},
        {"hours": "10:00-10:00"},
        {"timezone": "Mars/Base"},
        {"timezone": "America"},  # a folder of the zone database, not a zone
        {"timezone": "../etc"},
    ):
        with pytest.raises(ValidationError):
            RuleConfig.model_validate(bad)
    with pytest.raises(ValidationError):
        RuleConfig(attempts=0)


def test_callback_numbers_must_be_real_and_never_premium_rate() -> None:
    def ring(raw: str | None, refused: tuple[str, ...] = ()) -> str:
        return callback_number(raw, region="US", refused_prefixes=refused)

    assert ring("(212) 555-0100") == "+12125550100"
    assert ring("0044 20 7946 0000") == "+442079460000"
    for bad, field_says in (
        ("12", "no number"),
        (None, "nothing"),
        ("anonymous", "no number"),
        ("+1 900 555 0100", "premium-rate"),
        ("+44 909 879 0000", "premium-rate"),
    ):
        with pytest.raises(Unprocessable) as caught:
            ring(bad)
        assert caught.value.field == "number" and field_says in caught.value.detail
    with pytest.raises(Unprocessable, match="starts with \\+4420"):
        ring("+44 20 7946 0000", ("+4420",))
