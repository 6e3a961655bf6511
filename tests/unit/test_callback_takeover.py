"""When a new call takes the callback takeover's lock (``may_take_over_callback``)."""

from __future__ import annotations

from callcenter.queue.calls import may_take_over_callback


def test_the_lock_is_taken_only_when_the_look_up_saw_a_callback_waiting() -> None:
    rows = [
        {"matched": "phone", "id": 1, "callback_waiting": False},
        {"matched": "phone", "id": 2, "callback_waiting": True},
        {"matched": "customer_number", "id": 3, "callback_waiting": False},
    ]
    assert may_take_over_callback(rows, 2) is True
    assert may_take_over_callback(rows, 1) is False
    assert may_take_over_callback(rows, 3) is False
    # A customer the look-up did not find (created by this call's identification).
    assert may_take_over_callback(rows, 4) is False


def test_without_the_look_up_the_lock_is_taken_as_before() -> None:
    assert may_take_over_callback(None, 1) is True
    # Candidates read without the column (an older statement): the safe answer.
    assert may_take_over_callback([{"matched": "phone", "id": 1}], 1) is True
