"""Who calls: the sample customers, and the kinds of caller a real line gets.

The population is read with the importer's own row checks, so a simulated
caller's phone and tier are exactly what the service stored for them. The
mix of caller kinds is what identification has to cope with on a real line:
most callers ring from their own number; some from a number shared by a
household; some from a new number and type their customer number; some are
not customers yet; some withhold their number; and some call again during
the run, so histories grow while one watches.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from callcenter.customers.importer import GoodRow, RowError, check_row, file_format, records
from callcenter.customers.phones import normalize
from callcenter.customers.store import CustomerRules
from callcenter.customers.value import ordered_tiers
from callcenter.simulation.distributions import chance, pick_weighted

#: What a withheld caller's switch sends as the calling number.
WITHHELD = "anonymous"

#: The caller kinds and how often each rings, out of 1.
DEFAULT_MIX: tuple[tuple[str, float], ...] = (
    ("known", 0.62),  # from their own number
    ("household", 0.05),  # from a number two customers share: the agent picks
    ("new_number", 0.10),  # from a number we do not know, types their customer number
    ("unknown", 0.10),  # not a customer yet: a provisional one is made
    ("withheld", 0.05),  # no number; half of them type their customer number
    ("repeat", 0.08),  # someone who already called in this run calls again
)


@dataclass(frozen=True)
class Customer:
    customer_number: str
    name: str
    tier: str
    net_value: Decimal
    phones: tuple[str, ...]


@dataclass(frozen=True)
class Caller:
    """One call's caller, as the PBX presents them."""

    kind: str
    ani: str  # what the PBX sends as ``from``: E.164, or ``anonymous``
    typed: str | None  # the customer number they type when asked, if they know it
    customer: Customer | None  # who it really is (None: not a customer yet)


@dataclass
class Population:
    """The customers by tier, the shared numbers, and who called so far."""

    by_tier: dict[str, list[Customer]]
    tiers: list[str]  # most valuable first
    households: list[tuple[str, list[Customer]]]
    known_phones: frozenset[str]
    region: str
    past: list[Caller] = field(default_factory=list)

    def draw(self, rng: random.Random, mix: Sequence[tuple[str, float]] = DEFAULT_MIX) -> Caller:
        kind = pick_weighted(rng, mix)
        if kind == "repeat" and not self.past:
            kind = "known"
        if kind == "household" and not self.households:
            kind = "known"
        if kind == "repeat":
            before = rng.choice(self.past)
            caller = Caller("repeat", before.ani, before.typed, before.customer)
        elif kind == "household":
            phone, members = rng.choice(self.households)
            member = rng.choice(members)
            caller = Caller(kind, phone, member.customer_number, member)
        elif kind in ("known", "new_number"):
            customer = self._valuable_first(rng)
            if kind == "known":
                caller = Caller(kind, customer.phones[0], customer.customer_number, customer)
            else:
                caller = Caller(kind, self.fresh_phone(rng), customer.customer_number, customer)
        elif kind == "unknown":
            caller = Caller(kind, self.fresh_phone(rng), None, None)
        else:
            customer = self._valuable_first(rng)
            typed = customer.customer_number if chance(rng, 0.5) else None
            caller = Caller("withheld", WITHHELD, typed, customer if typed else None)
        if kind != "withheld" and len(self.past) < 5000:
            self.past.append(caller)
        return caller

    def _valuable_first(self, rng: random.Random) -> Customer:
        """A customer, the valuable ones far more often than their share.

        Platinum customers are about 1 % of the sample; drawn by their share,
        a minute of demo would show none. Each tier is drawn with weight
        1, 2, 3, 4 ... from the most valuable down, so every tier rings often
        and the lowest still rings most.
        """
        present = [t for t in self.tiers if self.by_tier.get(t)]
        weights = [(t, float(i + 1)) for i, t in enumerate(present)]
        return rng.choice(self.by_tier[pick_weighted(rng, weights)])

    def fresh_phone(self, rng: random.Random) -> str:
        """A valid US number no sample customer has."""
        while True:
            area = rng.randint(201, 989)
            exchange = rng.randint(200, 999)
            raw = f"+1{area}{exchange}{rng.randint(0, 9999):04d}"
            phone = normalize(raw, self.region)
            if phone is not None and phone not in self.known_phones:
                return phone


def load(path: Path, rules: CustomerRules) -> Population:
    """The population of the customer file at ``path``, read as the importer reads it."""
    fmt = file_format(path)
    customers: list[Customer] = []
    with path.open(encoding="utf-8", newline="") as text:
        for line, record in records(text, fmt):
            if isinstance(record, RowError):
                continue
            try:
                row: GoodRow = check_row(line, record, rules)
            except RowError:
                continue
            if row.phones:
                customers.append(_customer(row))
    return build(customers, rules.thresholds, rules.region)


def build(
    customers: Sequence[Customer], thresholds: Mapping[str, Decimal], region: str
) -> Population:
    tiers = ordered_tiers(thresholds)
    by_tier: dict[str, list[Customer]] = {t: [] for t in tiers}
    owners: dict[str, list[Customer]] = {}
    for c in customers:
        for phone in c.phones:
            owners.setdefault(phone, []).append(c)
    for c in customers:
        # Only customers who own their first number ring as "known": a shared one
        # is a household call, answered with candidates rather than a name.
        if len(owners[c.phones[0]]) == 1:
            by_tier.setdefault(c.tier, []).append(c)
    households = sorted((p, m) for p, m in owners.items() if len(m) > 1)
    return Population(
        by_tier=by_tier,
        tiers=tiers,
        households=[(p, m) for p, m in households],
        known_phones=frozenset(owners),
        region=region,
    )


def _customer(row: GoodRow) -> Customer:
    return Customer(
        customer_number=row.customer_number,
        name=row.name,
        tier=row.tier,
        net_value=row.lifetime_value - row.cost_to_serve,
        phones=row.phones,
    )
