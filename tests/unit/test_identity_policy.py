from __future__ import annotations

from callcenter.customers.identity import Link, Write, decide, link_decision
from callcenter.customers.models import CustomerSummary, Outcome


def c(i: int, provisional: bool = False) -> CustomerSummary:
    return CustomerSummary(
        id=i,
        customer_number=None if provisional else f"C{i}",
        name="",
        tier="standard",
        provisional=provisional,
    )


PHONE = "+12125550100"


def test_phone_of_one_customer_is_known() -> None:
    d = decide(PHONE, [c(1)], None)
    assert (d.outcome, d.customer, d.matched_by, d.write) == (
        Outcome.known,
        c(1),
        "phone",
        Write.none,
    )


def test_typed_number_from_unknown_phone_serves_this_call_and_links_nothing() -> None:
    d = decide(PHONE, [], c(2))
    assert (d.outcome, d.customer, d.write) == (Outcome.pending, c(2), Write.none)


def test_typed_number_from_provisional_phone_merges_nothing_yet() -> None:
    d = decide(PHONE, [c(9, provisional=True)], c(2))
    assert (d.outcome, d.customer, d.write) == (Outcome.pending, c(2), Write.none)
    assert d.candidates == ()


def test_a_confirmed_link_links_merges_or_leaves_a_taken_phone_alone() -> None:
    assert link_decision([], 2) is Link.link
    assert link_decision([c(9, provisional=True)], 2) is Link.merge
    assert link_decision([c(2)], 2) is Link.already
    assert link_decision([c(1)], 2) is Link.taken
    assert link_decision([c(1), c(9, provisional=True)], 2) is Link.taken


def test_typed_number_of_someone_else_is_a_conflict_and_wins() -> None:
    d = decide(PHONE, [c(1)], c(2))
    assert (d.outcome, d.customer, d.write) == (Outcome.conflict, c(2), Write.record_conflict)
    assert d.candidates == (c(1),)


def test_typed_number_among_shared_phone_owners_is_known() -> None:
    d = decide(PHONE, [c(1), c(2)], c(2))
    assert (d.outcome, d.customer, d.write) == (Outcome.known, c(2), Write.none)


def test_shared_phone_without_number_is_multiple() -> None:
    d = decide(PHONE, [c(1), c(2)], None)
    assert (d.outcome, d.customer, d.write) == (Outcome.multiple, None, Write.none)
    assert d.candidates == (c(1), c(2))


def test_real_owner_hides_a_provisional_one() -> None:
    d = decide(PHONE, [c(1), c(9, provisional=True)], None)
    assert (d.outcome, d.customer) == (Outcome.known, c(1))


def test_new_number_creates_provisional() -> None:
    d = decide(PHONE, [], None)
    assert (d.outcome, d.customer, d.write) == (Outcome.unknown, None, Write.create_provisional)


def test_withheld_number_creates_nothing() -> None:
    assert decide(None, [], None).write is Write.none
    d = decide(None, [], c(2))
    assert (d.outcome, d.customer, d.write) == (Outcome.known, c(2), Write.none)
