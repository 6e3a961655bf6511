from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callcenter.config import DEFAULT_TIER_THRESHOLDS, Settings
from callcenter.customers.value import (
    ValueFigures,
    check_tier,
    effective_tier,
    ordered_tiers,
    tier_for,
)
from callcenter.errors import UnknownTier

T = DEFAULT_TIER_THRESHOLDS


def figures(ltv: str, cost: str = "0") -> ValueFigures:
    return ValueFigures(Decimal(ltv), Decimal("0"), Decimal(cost))


@pytest.mark.parametrize(
    ("ltv", "cost", "tier"),
    [
        ("0", "0", "standard"),
        ("999.99", "0", "standard"),
        ("1000", "0", "silver"),
        ("5000", "0", "gold"),
        ("25000", "0", "platinum"),
        ("25500", "600", "gold"),  # net value counts, not lifetime value
        ("100", "800", "standard"),  # negative net value still has a tier
    ],
)
def test_tier_by_net_value(ltv: str, cost: str, tier: str) -> None:
    assert tier_for(figures(ltv, cost), T) == tier


money = st.decimals(min_value=0, max_value=10**7, places=2, allow_nan=False, allow_infinity=False)


@given(money, money, money)
def test_tier_is_monotone_in_value(a: Decimal, b: Decimal, cost: Decimal) -> None:
    low, high = sorted([a, b])
    rank = ordered_tiers(T)
    t_low = tier_for(ValueFigures(low, Decimal(0), cost), T)
    t_high = tier_for(ValueFigures(high, Decimal(0), cost), T)
    assert rank.index(t_high) <= rank.index(t_low)


def test_pin_wins_until_removed() -> None:
    assert effective_tier("standard", "platinum") == "platinum"
    assert effective_tier("standard", None) == "standard"


def test_unknown_tier_names_the_known_ones() -> None:
    with pytest.raises(UnknownTier) as info:
        check_tier("diamond", T)
    assert "platinum, gold, silver, standard" in info.value.detail
    assert check_tier("gold", T) == "gold"


def test_settings_read_thresholds_from_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLCENTER_TIER_THRESHOLDS", '{"vip": 10000, "regular": 0}')
    settings = Settings()
    assert ordered_tiers(settings.tier_thresholds) == ["vip", "regular"]


def test_settings_refuse_thresholds_that_leave_customers_without_tier(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CALLCENTER_TIER_THRESHOLDS", '{"vip": 10000, "regular": 100}')
    with pytest.raises(ValueError, match="lowest tier threshold"):
        Settings()
