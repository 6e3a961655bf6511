"""Identify: who is calling, from the calling number and a typed customer number.

``decide`` is the whole policy, pure: given who the phone and the typed
number point at, it says the outcome and the one write (if any) that follows.
``resolve`` is the thin edge that reads the candidates in one round trip,
takes the phone's lock only when it must write, and carries the write out.

Outcomes:

* *known*: the phone or the typed number names one customer.
* *pending*: a known customer number typed from a phone nobody has (or only a
  provisional customer has). The call is served as that customer *for this
  call only*; nothing is linked or merged. Anyone can type a number they read
  on a letter, so a typed number alone never makes a phone someone's for
  good: the link waits on the call until the agent confirms who is calling
  (``confirm_link``, from the agent socket's ``verify``). Then the phone is
  linked (``linked_via`` says who verified), and a provisional customer that
  stood for the phone is merged in, history included.
* *conflict*: the phone belongs to someone else. The typed number wins for this
  call, the conflict is recorded for a person to look at, nothing is re-linked
  (not even after the agent's confirmation: the phone's owner is the CRM's word).
* *multiple*: a shared number (household, switchboard) and nothing typed: the
  candidates go back so the IVR can ask for the number or the agent can pick.
* *unknown*: nobody has the number: a provisional customer is created for it,
  so the next call is recognised and history accumulates. A withheld or
  invalid number is unknown too, but never creates or matches anyone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from callcenter.customers import store
from callcenter.customers.models import CustomerSummary, Outcome, Resolution
from callcenter.customers.phones import normalize
from callcenter.db.pool import Conn


class Write(Enum):
    none = "none"
    record_conflict = "record_conflict"
    create_provisional = "create_provisional"


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    customer: CustomerSummary | None
    matched_by: str | None
    write: Write
    candidates: tuple[CustomerSummary, ...] = ()


def decide(
    phone: str | None,
    phone_owners: Sequence[CustomerSummary],
    number_owner: CustomerSummary | None,
) -> Decision:
    """The identification policy; see the module docstring for the outcomes."""
    real_owners = [c for c in phone_owners if not c.provisional]
    provisional_owners = [c for c in phone_owners if c.provisional]
    if number_owner is not None:
        if phone is None or any(c.id == number_owner.id for c in phone_owners):
            return Decision(Outcome.known, number_owner, "customer_number", Write.none)
        if not real_owners:
            # Served as the typed customer; the link and any merge wait for the agent.
            return Decision(Outcome.pending, number_owner, "customer_number", Write.none)
        return Decision(
            Outcome.conflict,
            number_owner,
            "customer_number",
            Write.record_conflict,
            tuple(real_owners),
        )
    if phone is None:
        return Decision(Outcome.unknown, None, None, Write.none)
    owners = real_owners or provisional_owners
    if len(owners) == 1:
        return Decision(Outcome.known, owners[0], "phone", Write.none)
    if len(owners) > 1:
        return Decision(Outcome.multiple, None, "phone", Write.none, tuple(owners))
    return Decision(Outcome.unknown, None, None, Write.create_provisional)


def _summary(row: Mapping[str, Any]) -> CustomerSummary:
    return CustomerSummary(
        id=row["id"],
        customer_number=row["customer_number"],
        name=row["name"],
        tier=row["tier"],
        provisional=row["provisional"],
    )


def terms(
    ani: str | None, customer_number: str | None, region: str
) -> tuple[str | None, str | None]:
    """What the candidates are looked up by: the phone (E.164, None when withheld or
    invalid) and the typed customer number (None when nothing was typed)."""
    return normalize(ani, region), (customer_number or "").strip() or None


async def resolve(
    conn: Conn,
    ani: str | None,
    customer_number: str | None,
    *,
    region: str,
    lowest_tier: str,
    found: Sequence[Mapping[str, Any]] | None = None,
) -> Resolution:
    """Identify a caller and carry out the one write the decision asks for.

    ``lowest_tier`` is the tier a provisional customer starts in (no value yet).
    ``found``: the candidates for these ``terms``, when the caller read them in a
    statement of its own (the columns of SQL's ``identify_candidates``, rows whose
    ``matched`` is null left out): the telephony gateway reads them with its first
    look-up of an incoming call, saving this function's round trip.
    """
    phone, typed = terms(ani, customer_number, region)
    rows = (
        [r for r in found if r["matched"] is not None]
        if found is not None
        else await conn.fetch(store.Q["identify_candidates"], phone, typed)
    )
    owners = [_summary(r) for r in rows if r["matched"] == "phone"]
    by_number = next((_summary(r) for r in rows if r["matched"] == "customer_number"), None)
    decision = decide(phone, owners, by_number)
    if decision.write is Write.create_provisional:
        assert phone is not None
        # The common write (a number nobody has) in one statement that checks,
        # under the phone's lock, that it still has no owner; if it has one by
        # now, nothing was written and the decision is made again below.
        row = await conn.fetchrow(store.Q["provisional_for_phone"], phone, lowest_tier)
        if row is not None:
            return _provisional(row, phone, typed)
    if decision.write is not Write.none:
        assert phone is not None
        async with conn.transaction():
            # Re-read under the phone's lock: another call may have written first.
            await conn.execute(store.Q["lock_phone"], phone)
            owners = [_summary(r) for r in await conn.fetch(store.Q["phone_owners"], phone)]
            decision = decide(phone, owners, by_number)
            return await _carry_out(conn, decision, phone, typed, lowest_tier)
    return _answer(decision, phone, typed is not None and by_number is None)


async def _carry_out(
    conn: Conn,
    decision: Decision,
    phone: str,
    typed: str | None,
    lowest_tier: str,
) -> Resolution:
    conflict_id: int | None = None
    customer = decision.customer
    if decision.write is Write.record_conflict:
        assert customer is not None
        assert typed is not None
        conflict_id = await conn.fetchval(
            store.Q["insert_conflict"],
            phone,
            [c.id for c in decision.candidates],
            customer.id,
            typed,
        )
    elif decision.write is Write.create_provisional:
        row = await conn.fetchrow(store.Q["provisional_for_phone"], phone, lowest_tier)
        assert row is not None  # under the phone's lock, which this transaction holds
        return _provisional(row, phone, typed)
    answer = _answer(decision, phone, False)
    answer.conflict_id = conflict_id
    return answer


def _provisional(row: Mapping[str, Any], phone: str, typed: str | None) -> Resolution:
    """The answer for a caller given a new provisional customer (``row``)."""
    return Resolution(
        outcome=Outcome.unknown,
        customer=_summary(row),
        phone=phone,
        customer_number_not_found=typed is not None,
    )


class Link(Enum):
    """What confirming a pending link does, given who the phone belongs to by then."""

    already = "already"
    link = "link"
    merge = "merge"
    taken = "taken"


def link_decision(phone_owners: Sequence[CustomerSummary], customer_id: int) -> Link:
    """Whether a confirmed caller's phone may be linked to them, and how.

    Pure, like ``decide``. Between the call's arrival and the agent's
    confirmation the CRM may have given the phone to someone else: then it is
    *taken* and stays theirs (a person sorts that out, as with a conflict).
    """
    if any(c.id == customer_id for c in phone_owners):
        return Link.already
    if any(not c.provisional for c in phone_owners):
        return Link.taken
    return Link.merge if phone_owners else Link.link


async def confirm_link(conn: Conn, phone: str, customer_id: int, *, via: str) -> bool:
    """Link ``phone`` to ``customer_id`` now that an agent confirmed who called.

    Runs inside the caller's transaction, under the phone's lock (the same one
    ``resolve`` writes under). The link is written before a provisional owner
    is merged, so the phone's ``linked_via`` says who verified it rather than
    "merge". True when the phone is the customer's afterwards.
    """
    await conn.execute(store.Q["lock_phone"], phone)
    owners = [_summary(r) for r in await conn.fetch(store.Q["phone_owners"], phone)]
    action = link_decision(owners, customer_id)
    if action is Link.taken:
        return False
    if action is not Link.already:
        await conn.execute(store.Q["link_phone"], phone, customer_id, "linked", via)
    if action is Link.merge:
        for provisional in owners:
            await store.merge_provisional(conn, provisional.id, customer_id)
    return True


async def resolve_pick(conn: Conn, ani: str | None, customer_id: int, *, region: str) -> Resolution:
    """Identify a caller an agent picked (from a shared number's candidates or a search).

    The agent's word stands where the typed customer number's would: ``decide``
    is given the picked customer as the number's owner, so the outcome and the
    write are the same as for the IVR's number (a pick from a phone that is
    nobody's is *pending* until the agent's confirmation, which the caller of
    this records; a phone that is someone else's is a *conflict*, recorded).
    """
    phone = normalize(ani, region)
    row = await conn.fetchrow(store.Q["pick_candidate"], customer_id)
    if row is None:
        return Resolution(outcome=Outcome.unknown, customer=None, phone=phone)
    picked = _summary(row)
    owners = (
        [_summary(r) for r in await conn.fetch(store.Q["phone_owners"], phone)] if phone else []
    )
    decision = decide(phone, owners, picked)
    if decision.write is Write.record_conflict:
        assert phone is not None
        async with conn.transaction():
            await conn.execute(store.Q["lock_phone"], phone)
            owners = [_summary(r) for r in await conn.fetch(store.Q["phone_owners"], phone)]
            decision = decide(phone, owners, picked)
            if decision.write is Write.record_conflict:
                return await _carry_out(conn, decision, phone, picked.customer_number or "", "")
    return _answer(decision, phone, False)


def _answer(decision: Decision, phone: str | None, number_not_found: bool) -> Resolution:
    return Resolution(
        outcome=decision.outcome,
        customer=decision.customer,
        matched_by=decision.matched_by,
        phone=phone,
        candidates=list(decision.candidates)
        if decision.outcome in (Outcome.multiple, Outcome.conflict)
        else [],
        customer_number_not_found=number_not_found,
    )


def recognised_by(resolution: Resolution) -> str:
    """How the caller was recognised, in the words the agent's panel shows.

    The call record keeps this rather than the bare outcome: "known" alone does
    not tell the agent whether the phone or a typed customer number found the
    caller, and a greeting should not assume which.
    """
    if resolution.outcome is Outcome.known:
        return resolution.matched_by or "phone"
    if resolution.outcome is Outcome.unknown and resolution.phone is None:
        return "withheld"
    return resolution.outcome.value
