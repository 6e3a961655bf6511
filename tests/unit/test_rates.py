"""The bucketed answer window: the same totals as counting the whole window afresh."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter.queue.rates import Bucket, RateWindow

Events = list[tuple[float, float | None]]


def _read(events: Events, since: float, now: float, size: float) -> list[tuple[int, Bucket]]:
    """What the database query returns: the buckets of calls answered (and ended) from ``since``."""
    buckets: dict[int, list[float]] = {}
    for answered_at, ended_at in events:
        if since <= answered_at <= now:
            b = math.floor(answered_at / size)
            buckets.setdefault(b, [0, 0, 0.0])[0] += 1
        if ended_at is not None and since <= ended_at <= now:
            b = math.floor(ended_at / size)
            entry = buckets.setdefault(b, [0, 0, 0.0])
            entry[1] += 1
            entry[2] += ended_at - answered_at
    return [(b, Bucket(int(a), int(e), t)) for b, (a, e, t) in sorted(buckets.items())]


def _afresh(events: Events, window: RateWindow, now: float) -> tuple[int, float | None]:
    """Counting every call of the window at ``now``, bucket-aligned as the window is."""
    size = window.bucket_seconds
    oldest = math.floor((now - window.window_seconds) / size) * size
    answered = sum(1 for a, _ in events if oldest <= a <= now)
    talks = [e - a for a, e in events if e is not None and oldest <= e <= now]
    return answered, (sum(talks) / len(talks) if talks else None)


@settings(max_examples=200, deadline=None)
@given(
    calls=st.lists(
        st.tuples(st.floats(0, 400), st.one_of(st.none(), st.floats(0, 60))), max_size=60
    ),
    readings=st.lists(st.floats(0.5, 40), min_size=1, max_size=30),
)
def test_readings_from_kept_buckets_equal_counting_afresh(
    calls: list[tuple[float, float | None]], readings: list[float]
) -> None:
    # Calls become visible as time passes (answered_at <= now), never later
    # than the settle time: exactly what the database shows each reading.
    events = [(a, None if d is None else a + d) for a, d in calls]
    window = RateWindow(window_seconds=120, bucket_seconds=5, settle_seconds=10)
    now = 1000.0
    events = [(now - 200 + a, None if e is None else now - 200 + e) for a, e in events]
    for step in readings:
        now += step
        since = window.since(now)
        window.fold(now, since, _read(events, since, now, window.bucket_seconds))
        totals = window.totals(now)
        answered, mean_talk = _afresh(events, window, now)
        assert totals.answered == answered
        if mean_talk is None:
            assert totals.mean_talk_seconds is None
        else:
            assert totals.mean_talk_seconds is not None
            assert math.isclose(totals.mean_talk_seconds, mean_talk, rel_tol=1e-9, abs_tol=1e-9)
        assert window.window_seconds <= totals.covered_seconds <= window.window_seconds + 5


def test_a_reading_fetches_only_what_is_not_final() -> None:
    window = RateWindow(window_seconds=900, bucket_seconds=5, settle_seconds=10)
    assert window.since(10_000.0) == 9_100.0  # the first reading: the whole window
    window.fold(10_000.0, 9_100.0, [(1900, Bucket(answered=3))])
    # Buckets that ended 10 s or more before the reading are kept; the next
    # reading starts where they end.
    assert window.since(10_001.0) == 9_990.0
    assert window.totals(10_001.0).answered == 3


def test_buckets_leave_the_window() -> None:
    window = RateWindow(window_seconds=60, bucket_seconds=5, settle_seconds=10)
    window.fold(1000.0, 940.0, [(190, Bucket(answered=2)), (197, Bucket(answered=1))])
    assert window.totals(1000.0).answered == 3
    assert window.totals(1012.0).answered == 3  # the window reaches back to 950 s
    assert window.totals(1016.0).answered == 1  # now to 955 s: bucket 190 (950-955 s) is out
    window.fold(1100.0, window.since(1100.0), [])
    assert window.totals(1100.0).answered == 0


def test_a_short_window_gets_buckets_that_resolve_it() -> None:
    assert RateWindow(window_seconds=2).bucket_seconds == 0.2


def test_an_older_reading_that_finishes_last_is_dropped() -> None:
    """Two enqueues read at once; the one with the older clock folds second."""
    events: Events = [(9_981.0, None), (9_986.0, None), (9_996.0, None)]
    window = RateWindow(window_seconds=120, bucket_seconds=5, settle_seconds=10)
    window.fold(9_990.0, 9_880.0, _read(events, 9_880.0, 9_990.0, 5))
    since = window.since(9_997.0)
    newer, older = 10_002.0, 9_997.0
    window.fold(newer, since, _read(events, since, newer, 5))
    window.fold(older, since, _read(events, since, older, 5))
    assert window.totals(newer).answered == _afresh(events, window, newer)[0] == 3


def test_a_service_clock_far_off_still_reads_the_window() -> None:
    """Only the first reading trusts the service's clock; the rest go by the database's."""
    events: Events = [(9_500.0, 9_560.0), (9_900.0, None)]
    window = RateWindow(window_seconds=900, bucket_seconds=5, settle_seconds=10)
    ahead = 5_000.0  # the service's clock runs 5,000 s ahead of the database's
    for local in (10_000.0 + ahead, 10_001.0 + ahead, 10_020.0 + ahead):
        db_now = local - ahead
        since = window.since(local)
        window.fold(db_now, since, _read(events, since, db_now, 5), local_now=local)
    totals = window.totals(10_020.0)
    assert (totals.answered, totals.mean_talk_seconds) == _afresh(events, window, 10_020.0)


def test_a_first_reading_by_a_clock_a_little_ahead_is_read_again() -> None:
    """Ahead by less than the window: the first reading misses the window's
    start, and the next one, by the database's clock, reads it."""
    events: Events = [(9_200.0, None), (9_950.0, None)]
    window = RateWindow(window_seconds=900, bucket_seconds=5, settle_seconds=10)
    ahead = 300.0
    for local in (10_000.0 + ahead, 10_001.0 + ahead):
        db_now = local - ahead
        since = window.since(local)
        window.fold(db_now, since, _read(events, since, db_now, 5), local_now=local)
    assert window.totals(10_001.0).answered == _afresh(events, window, 10_001.0)[0] == 2
