"""Estimated wait: a number only when somebody serves the queue (issue 18, honest EWT)."""

from __future__ import annotations

from callcenter.queue.ewt import QueueRates, estimated_wait


def test_with_nobody_staffed_the_wait_is_unknown_even_with_recent_answers() -> None:
    busy_earlier = QueueRates(
        answered=60, window_seconds=600, mean_handle_seconds=120, staffed=0, available=0
    )
    assert busy_earlier.service_rate is not None  # the window alone would give a number
    assert estimated_wait(0, busy_earlier) is None
    assert estimated_wait(5, busy_earlier) is None


def test_with_agents_staffed_the_wait_is_a_number() -> None:
    staffed = QueueRates(
        answered=60, window_seconds=600, mean_handle_seconds=120, staffed=2, available=0
    )
    assert estimated_wait(3, staffed) == 4 / (60 / 600)
    free = QueueRates(
        answered=0, window_seconds=600, mean_handle_seconds=None, staffed=1, available=1
    )
    assert estimated_wait(0, free) == 0.0
