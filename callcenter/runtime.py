"""Supervised background services: named tasks that are restarted when they die.

Every long-lived service (the router, the bridger and the releaser, the ARI
adapter, the agent hub, the event bus's listener) runs a few loops that must
never end while the application runs. They used to each write the same
scaffolding: named tasks, a done-callback that recorded a ``failure`` for
``/readyz``, a guarded spawn for side work. A task that died stayed dead: when
PostgreSQL was restarted under load, asyncpg raised ``InternalClientError``
("cannot switch to state 12; another operation is in progress") on a pooled
connection, no loop counted it as a database error, and the router's
dispatcher ended for good: no call was offered again and ``/readyz`` stayed
503 until the process was restarted.

So two things live here, once:

* ``TRANSIENT_DB_ERRORS``: what a loop that talks to the database survives
  (log, wait, try again) instead of dying.
* ``Supervisor``: one per service. ``start(name, factory)`` runs a named task
  and restarts it (a new coroutine from ``factory``) when it dies of anything
  but its own cancellation, with exponential backoff; ``spawn`` runs one-shot
  side work whose failure is logged, never lost; ``stop`` cancels all of it.

The readiness rule: a task's failure is recorded when it dies and stands
while it is down *and* while its restarted run is on probation; it is cleared
once the restarted run has lived ``stable_seconds`` without dying. A task
that dies again and again (a bug hit on every event) therefore keeps the
service unready instead of flapping between ready and not, and its backoff
keeps growing (up to ``backoff_max_seconds``); a run that lived through its
probation resets the backoff. This module sits at the bottom of the package:
it imports the standard library and asyncpg only, so any room may use it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import asyncpg

_log = logging.getLogger(__name__)

#: What a loop that talks to the database survives: the connection broke
#: (``OSError``), the server said no (``PostgresError``), the driver found the
#: connection unusable (``InterfaceError``) or in a state it did not expect
#: (``InternalClientError``, seen when PostgreSQL restarts under load), or the
#: answer did not come in time (``TimeoutError``, which is ``asyncio.TimeoutError``).
TRANSIENT_DB_ERRORS = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    TimeoutError,
)

#: A task factory: called once per run, so a restart gets a fresh coroutine.
TaskFactory = Callable[[], Coroutine[Any, Any, None]]


class Supervisor:
    """The named tasks of one service, restarted with backoff; see the module's docstring.

    ``service`` names the service in logs and in ``/readyz`` ("the router
    stopped: …"); ``duty`` says what stops happening while a task is down
    (said in the log, so whoever reads it knows what is at stake).
    """

    def __init__(
        self,
        service: str,
        *,
        duty: str = "",
        backoff_min_seconds: float = 0.1,
        backoff_max_seconds: float = 5.0,
        stable_seconds: float = 5.0,
    ) -> None:
        self.service = service
        self.duty = duty
        self.backoff_min_seconds = backoff_min_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self.stable_seconds = stable_seconds
        #: Deaths of supervised tasks since the start (side work does not count).
        self.restarts = 0
        self._runners: dict[str, asyncio.Task[None]] = {}
        self._failures: dict[str, str] = {}
        self._conditions: dict[str, str] = {}
        self._side: set[asyncio.Task[None]] = set()
        self._stopping = False

    # -- readiness -----------------------------------------------------------

    @property
    def failure(self) -> str | None:
        """What is down (or on probation after a restart, or reported), or None when all is well."""
        problems = {**self._conditions, **self._failures}
        if not problems:
            return None
        return "; ".join(problems[name] for name in sorted(problems))

    def report(self, name: str, problem: str | None) -> None:
        """Say that something the service needs besides its tasks is down (``problem``),
        or up again (None): a peer's connection, say. Reported like a dead task."""
        if problem is None:
            self._conditions.pop(name, None)
        else:
            self._conditions[name] = problem

    # -- tasks -----------------------------------------------------------------

    def start(self, name: str, factory: TaskFactory) -> asyncio.Task[None]:
        """Run ``factory()`` as the task ``name`` until ``stop``, restarting it when it dies."""
        if name in self._runners:
            raise ValueError(f"{self.service} already runs a task named {name!r}")
        runner = asyncio.create_task(self._supervise(name, factory), name=name)
        runner.add_done_callback(self._runner_done)
        self._runners[name] = runner
        return runner

    async def _supervise(self, name: str, factory: TaskFactory) -> None:
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        delay = self.backoff_min_seconds
        run = 0
        while True:
            run += 1
            started = loop.time()
            probation: asyncio.TimerHandle | None = None
            if name in self._failures:
                probation = loop.call_later(self.stable_seconds, self._recovered, name, run)
            try:
                await factory()
                ended = f"{name} ended"
                error: BaseException | None = None
            except asyncio.CancelledError:
                if self._stopping or (me is not None and me.cancelling()):
                    raise
                # Cancelled from inside (an awaited task was cancelled), not by stop().
                ended, error = f"{name} was cancelled", None
            except Exception as exc:
                ended, error = f"{name} died: {exc!r}", exc
            finally:
                if probation is not None:
                    probation.cancel()
            if loop.time() - started >= self.stable_seconds:
                delay = self.backoff_min_seconds  # it had been running well
            self._failures[name] = ended
            self.restarts += 1
            _log.critical(
                "%s task %s; %srestarting it in %.1f s",
                self.service,
                ended,
                f"{self.duty} until then; " if self.duty else "",
                delay,
                exc_info=error,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff_max_seconds)

    def _recovered(self, name: str, run: int) -> None:
        if self._failures.pop(name, None) is not None:
            _log.warning("%s task %s runs again (run %d)", self.service, name, run)

    def _runner_done(self, runner: asyncio.Task[None]) -> None:
        """A supervisor's runner ends only at ``stop``; anything else is said loudly."""
        if self._stopping:
            return
        name = runner.get_name()
        if runner.cancelled():
            self._failures[name] = f"{name} was cancelled"
        else:
            self._failures[name] = f"{name} stopped: {runner.exception()!r}"
        _log.critical("%s task %s; it is not restarted", self.service, self._failures[name])

    # -- side work -------------------------------------------------------------

    def spawn(self, work: Awaitable[Any], what: str) -> asyncio.Task[None]:
        """Run one piece of side work; its failure is logged (never lost), it is not retried.

        A transient database error is a warning (the service's loops catch up
        with what it left undone); anything else is an error with its traceback.
        """
        task = asyncio.create_task(self._guard(work, what))
        self._side.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._side.discard(t)
            # Cancelled (at stop) before it started: close the work, so Python
            # does not warn that it was never awaited.
            if inspect.iscoroutine(work) and inspect.getcoroutinestate(work) == "CORO_CREATED":
                work.close()

        task.add_done_callback(done)
        return task

    async def _guard(self, work: Awaitable[Any], what: str) -> None:
        try:
            await work
        except TRANSIENT_DB_ERRORS as exc:
            _log.warning("%s: %s failed, the database did not answer: %r", self.service, what, exc)
        except Exception:
            _log.exception("%s: %s failed", self.service, what)

    # -- stopping --------------------------------------------------------------

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Cancel every task and side task, and wait until they are gone; never hang.

        Side work spawned while stopping (a runner's ``finally`` may release
        something) is cancelled too, not left running on a closing pool. A task
        still there a second after its cancel is cancelled again: Python 3.11's
        ``wait_for`` can swallow a cancel that lands as its inner wait ends, and
        the task then loops on. After ``grace_seconds`` what is left is named in
        the log and left behind, so a shutdown ends however a task misbehaves.
        """
        self._stopping = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_seconds
        try:
            while True:
                pending = [t for t in (*self._runners.values(), *self._side) if not t.done()]
                if not pending:
                    break
                left = deadline - loop.time()
                if left <= 0:
                    _log.error(
                        "%s: %d task(s) did not stop %.0f s after being cancelled, left behind: %s",
                        self.service,
                        len(pending),
                        grace_seconds,
                        ", ".join(sorted(t.get_name() for t in pending)),
                    )
                    break
                for task in pending:
                    task.cancel()
                done, _ = await asyncio.wait(pending, timeout=min(1.0, left))
                for task in done:  # retrieved, so none is reported as never retrieved
                    if not task.cancelled():
                        task.exception()
        finally:
            self._runners.clear()
            self._failures.clear()
            self._stopping = False  # the service may be run again
