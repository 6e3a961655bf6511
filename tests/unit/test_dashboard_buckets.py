"""The day's buckets: settled buckets are read once, totals add only what settled since,
and a dashboard that cannot keep up is dropped instead of holding anyone up."""

from __future__ import annotations

import asyncio

from callcenter.dashboard import hub
from callcenter.dashboard.buckets import Agg, DayBuckets

K = ("general", "standard", 0)


def test_settled_buckets_are_kept_and_not_read_again() -> None:
    b = DayBuckets(bucket_seconds=10, settle_seconds=10)
    assert b.since(1000.0) == 1000.0  # the first reading goes back to the start
    b.fold(1100.0, 1000.0, [(100, K, Agg(answered=1)), (109, K, Agg(answered=2))])
    # Buckets ending by 1090 are final: the next reading starts there.
    assert b.since(1000.0) == 1090.0
    assert b.totals(1000.0)[K].answered == 3
    # A later reading brings the fresh bucket 109 again (now with 3) and a new one.
    b.fold(1120.0, 1090.0, [(109, K, Agg(answered=3)), (111, K, Agg(answered=1))])
    assert b.totals(1000.0)[K].answered == 5
    assert b.totals(1095.0)[K].answered == 4  # from bucket 109 on
    assert b.since(1000.0) == 1110.0


def test_cached_totals_add_only_newly_settled_buckets_and_maxima_stay_maxima() -> None:
    b = DayBuckets(bucket_seconds=10, settle_seconds=10)
    b.fold(1100.0, 1000.0, [(100, K, Agg(answered=1, wait_max=30.0))])
    assert b.totals(1000.0)[K].wait_max == 30.0
    b.fold(1200.0, 1090.0, [(110, K, Agg(answered=1, wait_max=5.0, wait_sum=5.0))])
    total = b.totals(1000.0)[K]
    assert (total.answered, total.wait_max, total.wait_sum) == (2, 30.0, 5.0)
    # Asking again does not count anything twice.
    assert b.totals(1000.0)[K].answered == 2
    b.forget_before(1105.0)
    assert b.totals(1000.0)[K].answered == 1


def test_an_older_reading_that_finishes_late_is_dropped() -> None:
    b = DayBuckets(bucket_seconds=10, settle_seconds=10)
    b.fold(1200.0, 1000.0, [(115, K, Agg(offered=2))])
    b.fold(1150.0, 1000.0, [(115, K, Agg(offered=9))])
    assert b.totals(1000.0)[K].offered == 2


class _StuckSocket:
    """A websocket whose peer reads nothing: every send waits for ever."""

    closed = False

    def __init__(self) -> None:
        self.close_code: int | None = None

    async def send_str(self, text: str) -> None:
        await asyncio.Event().wait()

    async def close(self, *, code: int, message: bytes) -> bool:
        self.close_code = code
        return True


async def test_a_dashboard_that_cannot_keep_up_is_closed_not_waited_for() -> None:
    ws = _StuckSocket()
    sock = hub.DashboardSocket(ws, "supervisor:sam")  # type: ignore[arg-type]
    for i in range(hub.OUTBOX + 2):  # one is taken by the stuck writer, then the box fills
        sock.send_json(f'{{"type":"change","n":{i}}}')
    assert sock.dropped
    assert sock.closing is not None
    await sock.closing
    assert ws.close_code == 4008
    sock.send_json('{"type":"change"}')  # a dropped socket takes nothing more
    await asyncio.sleep(0)
    assert sock.writer.cancelled() or sock.writer.done()


def test_a_rolling_window_leaves_nothing_behind_and_the_day_is_remembered() -> None:
    b = DayBuckets(bucket_seconds=10, settle_seconds=10)
    b.fold(1700.0, 1000.0, [(n, K, Agg(answered=1)) for n in range(100, 160)])
    for start in range(1000, 1600, 10):  # a window one bucket later at every reading
        assert b.totals(float(start))[K].answered == 160 - start // 10
    assert b._cache == {}  # was one sum per reading, kept all day
    assert b.totals(1000.0, remember=True)[K].answered == 60
    assert b.totals(1000.0, remember=True)[K].answered == 60
    assert list(b._cache) == [100]
