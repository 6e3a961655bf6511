"""The supervisor: a dead task is a restarted task, and readiness says so only while it is down."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable

import asyncpg
import pytest

from callcenter.runtime import TRANSIENT_DB_ERRORS, Supervisor


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for ``condition``, polling, with a generous deadline (never a fixed wait)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def test_transient_errors_include_what_a_restarted_postgresql_raises() -> None:
    # The error that killed the router's dispatcher when PostgreSQL restarted under load.
    for error in (
        asyncpg.InternalClientError("cannot switch to state 12"),
        asyncpg.InterfaceError("connection is closed"),
        asyncpg.ConnectionDoesNotExistError("gone"),
        asyncpg.CannotConnectNowError("starting up"),
        ConnectionResetError(),
        TimeoutError(),
    ):
        assert isinstance(error, TRANSIENT_DB_ERRORS), error
    assert not isinstance(RuntimeError("a bug"), TRANSIENT_DB_ERRORS)


async def test_a_task_that_dies_is_restarted_and_readiness_clears(
    caplog: pytest.LogCaptureFixture,
) -> None:
    supervisor = Supervisor(
        "router", backoff_min_seconds=0.01, backoff_max_seconds=0.05, stable_seconds=0.2
    )
    runs = 0
    seen_by_second_run: list[str | None] = []
    forever = asyncio.Event()

    async def work() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RuntimeError("a bug")
        seen_by_second_run.append(supervisor.failure)
        await forever.wait()

    with caplog.at_level(logging.CRITICAL, logger="callcenter.runtime"):
        assert supervisor.failure is None
        supervisor.start("router-dispatch", work)
        try:
            await _until(lambda: runs == 2)
            # While the restarted run is on probation, the death is still reported.
            assert seen_by_second_run == ["router-dispatch died: RuntimeError('a bug')"]
            assert supervisor.restarts == 1
            # Once it has run for the stable period, readiness clears.
            await _until(lambda: supervisor.failure is None)
            assert runs == 2
        finally:
            await supervisor.stop()
    died = [r for r in caplog.records if "router-dispatch died" in r.getMessage()]
    assert len(died) == 1 and died[0].exc_info is not None  # loud, with its traceback


async def test_a_task_that_keeps_dying_stays_reported_and_backs_off() -> None:
    supervisor = Supervisor(
        "ARI adapter", backoff_min_seconds=0.01, backoff_max_seconds=0.04, stable_seconds=5.0
    )
    started: list[float] = []
    loop = asyncio.get_running_loop()

    async def work() -> None:
        started.append(loop.time())
        raise ValueError("again")

    supervisor.start("ari-events", work)
    try:
        await _until(lambda: len(started) >= 5)
        assert supervisor.failure == "ari-events died: ValueError('again')"
    finally:
        await supervisor.stop()
    gaps = [b - a for a, b in itertools.pairwise(started)]
    assert gaps[0] >= 0.009 and gaps[-1] >= 0.035  # doubled up to the cap (clock slack)


async def test_a_task_that_returns_is_restarted_too() -> None:
    supervisor = Supervisor("hub", backoff_min_seconds=0.01, stable_seconds=0.1)
    runs = 0
    forever = asyncio.Event()

    async def work() -> None:
        nonlocal runs
        runs += 1
        if runs > 1:
            await forever.wait()

    supervisor.start("hub-events", work)
    try:
        await _until(lambda: runs == 2)
        await _until(lambda: supervisor.failure is None)
    finally:
        await supervisor.stop()


async def test_stop_cancels_tasks_and_side_work_and_records_nothing() -> None:
    supervisor = Supervisor("bridger")
    forever = asyncio.Event()
    began = asyncio.Event()

    async def loop_work() -> None:
        began.set()
        await forever.wait()

    supervisor.start("bridger-events", loop_work)
    side = supervisor.spawn(forever.wait(), "a call")
    await began.wait()
    await supervisor.stop()
    assert side.cancelled()
    assert supervisor.failure is None and supervisor.restarts == 0
    # The service may run again after a stop, and a death is then a death again.
    runs: list[int] = []

    async def dies_once() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("after the restart")
        await forever.wait()

    supervisor.start("bridger-events", dies_once)
    try:
        await _until(lambda: len(runs) == 2)
        assert supervisor.restarts == 1
    finally:
        await supervisor.stop()


async def test_side_work_failures_are_logged_not_lost(caplog: pytest.LogCaptureFixture) -> None:
    supervisor = Supervisor("releaser")

    async def db_down() -> None:
        raise asyncpg.InternalClientError("cannot switch to state 12")

    async def bug() -> None:
        raise KeyError("oops")

    with caplog.at_level(logging.WARNING, logger="callcenter.runtime"):
        await supervisor.spawn(db_down(), "call 7")
        await supervisor.spawn(bug(), "call 8")
    await supervisor.stop()
    by_level = {r.levelno: r for r in caplog.records}
    assert "call 7 failed, the database did not answer" in by_level[logging.WARNING].getMessage()
    assert by_level[logging.ERROR].exc_info is not None
    assert "call 8 failed" in by_level[logging.ERROR].getMessage()
    assert supervisor.failure is None  # side work is not a supervised task


async def test_a_task_name_is_started_once() -> None:
    supervisor = Supervisor("router")
    supervisor.start("router-sweep", asyncio.Event().wait)
    try:
        with pytest.raises(ValueError, match="already runs"):
            supervisor.start("router-sweep", asyncio.Event().wait)
    finally:
        await supervisor.stop()


async def test_stop_cancels_side_work_spawned_while_stopping() -> None:
    supervisor = Supervisor("adapter")
    released = asyncio.Event()
    spawned: list[asyncio.Task[None]] = []

    async def release() -> None:
        await released.wait()  # as a release that would wait on a peer forever

    async def work() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            # A runner's finally that hands work to the supervisor as it stops.
            spawned.append(supervisor.spawn(release(), "release a leg"))

    supervisor.start("events", work)
    await asyncio.sleep(0)
    await asyncio.wait_for(supervisor.stop(), 30)
    assert spawned and spawned[0].done()


async def test_stop_cancels_again_a_task_that_swallowed_its_cancel(
    caplog: pytest.LogCaptureFixture,
) -> None:
    supervisor = Supervisor("router")
    cancels = 0

    async def stubborn() -> None:
        nonlocal cancels
        while True:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancels += 1
                if cancels >= 2:
                    raise
                # The first cancel is lost, as 3.11's wait_for can lose one.

    runner = supervisor.start("dispatch", stubborn)
    await asyncio.sleep(0)
    await asyncio.wait_for(supervisor.stop(grace_seconds=30), 30)
    assert runner.done() and cancels == 2


async def test_stop_ends_even_when_a_task_never_does(caplog: pytest.LogCaptureFixture) -> None:
    supervisor = Supervisor("hub")
    let_go = False

    async def deaf() -> None:
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if let_go:  # only the test's own clean-up gets through
                    raise

    runner = supervisor.start("presence", deaf)
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="callcenter.runtime"):
        await asyncio.wait_for(supervisor.stop(grace_seconds=0.3), 30)
    assert "did not stop" in caplog.text and "presence" in caplog.text
    let_go = True
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
