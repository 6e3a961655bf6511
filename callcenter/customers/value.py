"""Differentiate: a customer's value figures and the tier they earn.

The tier is what the rest of the service acts on (queue credit, treatments),
so it must be explainable: it comes from one number, the *net value*
(lifetime value minus cost to serve), compared against configured thresholds.
A supervisor may pin a tier with a reason; a pin wins until removed. All of
it is pure, so it is tested without a database and reused by the importer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from callcenter.errors import UnknownTier


@dataclass(frozen=True)
class ValueFigures:
    lifetime_value: Decimal
    annual_margin: Decimal
    cost_to_serve: Decimal

    @property
    def net_value(self) -> Decimal:
        return self.lifetime_value - self.cost_to_serve


def ordered_tiers(thresholds: Mapping[str, Decimal]) -> list[str]:
    """Tier names from most to least valuable (highest threshold first)."""
    return [name for name, _ in sorted(thresholds.items(), key=lambda kv: kv[1], reverse=True)]


def tier_for(figures: ValueFigures, thresholds: Mapping[str, Decimal]) -> str:
    """The highest tier whose threshold the net value reaches.

    Monotone by construction: a larger net value never earns a lower tier.
    The lowest threshold is at most 0 (checked in Settings), and a negative net
    value still lands in the lowest tier.
    """
    net = figures.net_value
    ranked = sorted(thresholds.items(), key=lambda kv: kv[1], reverse=True)
    for name, threshold in ranked:
        if net >= threshold:
            return name
    return ranked[-1][0]


def effective_tier(computed: str, pinned: str | None) -> str:
    """The tier the service acts on: a supervisor's pin, else the computed one."""
    return pinned if pinned is not None else computed


def check_tier(name: str, thresholds: Mapping[str, Decimal], *, field: str = "tier") -> str:
    """Raise a 422 naming the known tiers when ``name`` is not one of them."""
    if name not in thresholds:
        known = ", ".join(ordered_tiers(thresholds))
        raise UnknownTier(f"unknown tier {name!r}; known tiers: {known}", field=field)
    return name
