"""The customers room's tables: create, change and read customers.

Every function takes a connection, so the caller decides the transaction.
Validation that needs no database (phones, tiers, figures) happens before any
statement runs, so a bad request writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

import asyncpg

from callcenter.config import Settings
from callcenter.customers import phones as phone_rules
from callcenter.customers.audit import Audit
from callcenter.customers.models import (
    ConflictList,
    Customer,
    CustomerIn,
    CustomerPatch,
    History,
    IdentityConflict,
    Interaction,
    Phone,
    TierPin,
)
from callcenter.customers.value import ValueFigures, check_tier, ordered_tiers, tier_for
from callcenter.db.pool import Conn
from callcenter.db.sql import load_queries
from callcenter.errors import Conflict, DuplicateCustomerNumber, NotFound, Unprocessable

Q = load_queries("callcenter.customers", "queries.sql")

#: The unique constraint a second customer with the same number runs into (0001).
NUMBER_TAKEN = "customers_customer_number_key"


@dataclass(frozen=True)
class CustomerRules:
    """The settings the customers room acts on, taken once from ``Settings``."""

    region: str
    thresholds: Mapping[str, Decimal]

    @classmethod
    def from_settings(cls, settings: Settings) -> CustomerRules:
        return cls(region=settings.default_region, thresholds=dict(settings.tier_thresholds))

    @property
    def lowest_tier(self) -> str:
        return ordered_tiers(self.thresholds)[-1]


def normalize_all(raw_phones: Sequence[str], region: str, name: str = "phones") -> dict[str, str]:
    """E.164 forms of ``raw_phones``, in order, without repeats, each with the field it
    came from (``phones[i]``, for a 409 about it); 422 names the bad one."""
    seen: dict[str, str] = {}
    for i, raw in enumerate(raw_phones):
        field = f"{name}[{i}]"
        seen.setdefault(phone_rules.require(raw, region, field=field), field)
    return seen


def shared_on_purpose(shared: Sequence[str], phones: Mapping[str, str], region: str) -> set[str]:
    """The E.164 numbers of ``shared_phones``; each must be one of the request's phones
    (a typo there must not quietly leave the real number unprotected)."""
    marked = normalize_all(shared, region, "shared_phones")
    for phone, field in marked.items():
        if phone not in phones:
            raise Unprocessable(f"{phone} is not one of the phones", field=field)
    return set(marked)


async def claim_phone(
    conn: Conn, phone: str, customer_id: int, *, field: str, shared: bool
) -> None:
    """Give ``phone`` to ``customer_id``, refusing a number another customer has.

    A phone of two customers makes both "ask who is calling" (``multiple``), so
    that happens only when the request says the number is shared on purpose;
    otherwise 409 names the other customer. A provisional owner (an unknown
    caller's record) does not count: the CRM's word on a number beats our guess,
    and the provisional record can be merged into this one. Runs in the caller's
    transaction, under the phone's lock, so two requests cannot both take it.
    """
    await conn.execute(Q["lock_phone"], phone)
    if not shared:
        other = await conn.fetchrow(Q["phone_taken_by"], phone, customer_id)
        if other is not None:
            number = other["customer_number"]
            raise Conflict(
                f"{phone} belongs to customer {other['id']} ({number}); mark it shared "
                "if both customers use this number on purpose",
                field=field,
                other_customer={"id": other["id"], "customer_number": number},
            )
    await conn.execute(Q["link_phone"], phone, customer_id, "crm", "api")


async def create_customer(
    conn: Conn, data: CustomerIn, rules: CustomerRules, *, audit: Audit | None = None
) -> Customer:
    phones = normalize_all(data.phones, rules.region)
    shared = shared_on_purpose(data.shared_phones, phones, rules.region)
    figures = ValueFigures(data.lifetime_value, data.annual_margin, data.cost_to_serve)
    tier = tier_for(figures, rules.thresholds)
    async with conn.transaction():
        try:
            customer_id = await conn.fetchval(
                Q["insert_customer"],
                data.customer_number,
                data.name,
                data.email,
                data.lifetime_value,
                data.annual_margin,
                data.cost_to_serve,
                tier,
            )
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != NUMBER_TAKEN:
                raise _other_conflict(exc) from exc
            raise _duplicate_number(data.customer_number) from exc
        for phone, field in phones.items():
            await claim_phone(conn, phone, customer_id, field=field, shared=phone in shared)
        return await get_customer(conn, customer_id, audit=audit)


def _other_conflict(exc: asyncpg.UniqueViolationError) -> Conflict:
    """A unique constraint other than the customer number's (one an operator added, say)."""
    return Conflict(f"the customer conflicts with an existing one ({exc.constraint_name})")


async def get_customer(conn: Conn, customer_id: int, *, audit: Audit | None = None) -> Customer:
    """The record; with ``audit``, the same statement writes its audit entry (none for a 404)."""
    if audit is None:
        row = await conn.fetchrow(Q["get_customer"], customer_id)
    else:
        row = await conn.fetchrow(Q["get_customer_audited"], customer_id, *audit.params())
    if row is None:
        raise NotFound(f"no customer with id {customer_id}")
    return _customer(row)


async def update_customer(
    conn: Conn,
    customer_id: int,
    patch: CustomerPatch,
    rules: CustomerRules,
    *,
    audit: Audit | None = None,
) -> Customer:
    phones = normalize_all(patch.phones, rules.region) if patch.phones is not None else None
    shared = shared_on_purpose(patch.shared_phones, phones or {}, rules.region)
    async with conn.transaction():
        current = await get_customer(conn, customer_id)
        _refuse_merged(current)
        changes = patch.model_dump(exclude_unset=True)
        merged = current.model_dump() | {
            k: v for k, v in changes.items() if k not in ("phones", "shared_phones")
        }
        figures = ValueFigures(
            merged["lifetime_value"], merged["annual_margin"], merged["cost_to_serve"]
        )
        try:
            await conn.execute(
                Q["update_customer"],
                customer_id,
                merged["customer_number"],
                merged["name"],
                merged["email"],
                figures.lifetime_value,
                figures.annual_margin,
                figures.cost_to_serve,
                tier_for(figures, rules.thresholds),
            )
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != NUMBER_TAKEN:
                raise _other_conflict(exc) from exc
            raise _duplicate_number(merged["customer_number"]) from exc
        if phones is not None:
            # A number the customer has already keeps its standing: sending it again
            # changes nobody's sharing.
            held = {p.number for p in current.phones}
            await conn.execute(Q["delete_crm_phones"], customer_id)
            for phone, field in phones.items():
                await claim_phone(
                    conn, phone, customer_id, field=field, shared=phone in shared or phone in held
                )
        return await get_customer(conn, customer_id, audit=audit)


async def find_by_phone(
    conn: Conn, raw_phone: str, rules: CustomerRules, *, audit: Audit | None = None
) -> list[Customer]:
    phone = phone_rules.require(raw_phone, rules.region)
    ids = [r["customer_id"] for r in await conn.fetch(Q["customer_ids_by_phone"], phone)]
    return [await get_customer(conn, i, audit=audit) for i in ids]


async def find_by_number(
    conn: Conn, customer_number: str, *, audit: Audit | None = None
) -> list[Customer]:
    customer_id = await conn.fetchval(Q["customer_id_by_number"], customer_number.strip())
    return [] if customer_id is None else [await get_customer(conn, customer_id, audit=audit)]


async def list_customers(
    conn: Conn, after: int, limit: int, *, audit: Audit | None = None
) -> tuple[list[Customer], int | None]:
    ids = [r["id"] for r in await conn.fetch(Q["list_customer_ids"], after, limit + 1)]
    page = ids[:limit]
    customers = [await get_customer(conn, i, audit=audit) for i in page]
    return customers, (page[-1] if len(ids) > limit else None)


async def pin_tier(
    conn: Conn,
    customer_id: int,
    tier: str,
    reason: str,
    pinned_by: str,
    rules: CustomerRules,
    *,
    audit: Audit | None = None,
) -> Customer:
    check_tier(tier, rules.thresholds)
    async with conn.transaction():  # the change and its audit entry, or neither
        status = await conn.execute(Q["pin_tier"], customer_id, tier, reason, pinned_by)
        _found(status, customer_id)
        return await get_customer(conn, customer_id, audit=audit)


async def unpin_tier(conn: Conn, customer_id: int, *, audit: Audit | None = None) -> Customer:
    async with conn.transaction():
        _found(await conn.execute(Q["unpin_tier"], customer_id), customer_id)
        return await get_customer(conn, customer_id, audit=audit)


async def add_phone(
    conn: Conn,
    customer_id: int,
    raw_phone: str,
    rules: CustomerRules,
    *,
    shared: bool = False,
    audit: Audit | None = None,
) -> Customer:
    phone = phone_rules.require(raw_phone, rules.region, field="phone")
    async with conn.transaction():
        _refuse_merged(await get_customer(conn, customer_id))
        await claim_phone(conn, phone, customer_id, field="phone", shared=shared)
        return await get_customer(conn, customer_id, audit=audit)


async def remove_phone(
    conn: Conn,
    customer_id: int,
    raw_phone: str,
    rules: CustomerRules,
    *,
    audit: Audit | None = None,
) -> Customer:
    phone = phone_rules.require(raw_phone, rules.region)
    async with conn.transaction():
        status = await conn.execute(Q["delete_phone"], customer_id, phone)
        if status.endswith(" 0"):
            await get_customer(conn, customer_id)  # 404 for an unknown customer first
            raise NotFound(f"customer {customer_id} has no phone {phone}")
        return await get_customer(conn, customer_id, audit=audit)


async def merge_provisional(conn: Conn, provisional_id: int, into_id: int) -> None:
    """Fold a provisional customer (phones and history) into a real one.

    Only provisional customers merge: merging two CRM records is the CRM's call.
    Runs inside the caller's transaction.
    """
    if provisional_id == into_id:
        raise Conflict("a customer cannot be merged into itself", field="into_customer_id")
    source = await conn.fetchrow(Q["lock_customer"], provisional_id)
    target = await conn.fetchrow(Q["lock_customer"], into_id)
    if source is None:
        raise NotFound(f"no customer with id {provisional_id}")
    if target is None:
        raise NotFound(f"no customer with id {into_id}", field="into_customer_id")
    if not source["provisional"] or source["merged_into"] is not None:
        raise Conflict(
            f"customer {provisional_id} is not an unmerged provisional customer; "
            "only provisional customers are merged"
        )
    if target["merged_into"] is not None:
        raise Conflict(f"customer {into_id} was itself merged", field="into_customer_id")
    await conn.execute(Q["merge_move_phones"], provisional_id, into_id)
    await conn.execute(Q["merge_drop_phones"], provisional_id)
    await conn.execute(Q["merge_move_history"], provisional_id, into_id)
    await conn.execute(Q["merge_mark"], provisional_id, into_id)


async def history(
    conn: Conn, customer_id: int, before: int | None, limit: int, *, audit: Audit | None = None
) -> History:
    await get_customer(conn, customer_id, audit=audit)
    rows = await conn.fetch(Q["history_page"], customer_id, before, limit + 1)
    items = [Interaction(**dict(r)) for r in rows[:limit]]
    return History(
        customer_id=customer_id,
        interactions=items,
        next_before=items[-1].id if len(rows) > limit else None,
    )


async def conflicts(conn: Conn, customer_id: int | None, limit: int) -> ConflictList:
    rows = await conn.fetch(Q["list_conflicts"], customer_id, limit)
    return ConflictList(conflicts=[IdentityConflict(**dict(r)) for r in rows])


def _customer(row: asyncpg.Record) -> Customer:
    pin = None
    if row["pinned_tier"] is not None:
        pin = TierPin(
            tier=row["pinned_tier"],
            reason=row["pin_reason"],
            pinned_by=row["pinned_by"],
            pinned_at=row["pinned_at"],
        )
    return Customer(
        id=row["id"],
        customer_number=row["customer_number"],
        name=row["name"],
        email=row["email"],
        phones=[Phone(**p) for p in row["phones"]],
        lifetime_value=row["lifetime_value"],
        annual_margin=row["annual_margin"],
        cost_to_serve=row["cost_to_serve"],
        net_value=row["lifetime_value"] - row["cost_to_serve"],
        tier=row["pinned_tier"] or row["computed_tier"],
        computed_tier=row["computed_tier"],
        pin=pin,
        needs=row["needs"],
        provisional=row["provisional"],
        merged_into=row["merged_into"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        erased_at=row["erased_at"],
    )


def _found(status: str, customer_id: int) -> None:
    if status.endswith(" 0"):
        raise NotFound(f"no customer with id {customer_id}")


def _refuse_merged(customer: Customer) -> None:
    if customer.merged_into is not None:
        raise Conflict(
            f"customer {customer.id} was merged into {customer.merged_into}; change that one"
        )


def _duplicate_number(number: str | None) -> DuplicateCustomerNumber:
    return DuplicateCustomerNumber(
        f"customer number {number!r} belongs to another customer", field="customer_number"
    )
