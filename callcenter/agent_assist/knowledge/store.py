"""The agent-assist room's tables: the question bank, treatment rules, answers.

Every function takes a connection, so the caller decides the transaction.
Every change to the bank runs under one advisory lock and is checked against
the whole bank first (``consistency.check_bank``), so a write that would
leave a condition reading an unknown question, or questions waiting on each
other in a circle, is refused and changes nothing. Answers are checked
against the customer's pending question and the question's kind before
they are stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

import asyncpg
from pydantic import ValidationError

from callcenter.agent_assist.knowledge import conditions
from callcenter.agent_assist.knowledge.conditions import Facts
from callcenter.agent_assist.knowledge.consistency import BankProblem, check_bank
from callcenter.agent_assist.knowledge.models import (
    Answer,
    AnswerRecorded,
    CustomerQuestion,
    LatestAnswer,
    QuestionOut,
    QuestionPatch,
    Removed,
    TreatmentOut,
    TreatmentPatch,
)
from callcenter.agent_assist.knowledge.questions import (
    AnswerKind,
    Question,
    StoredAnswer,
    check_answer,
    current_answers,
    is_current,
    pending_question,
)
from callcenter.agent_assist.knowledge.treatments import MatchedTreatment, Treatment, matching
from callcenter.db.pool import Conn
from callcenter.db.sql import load_queries
from callcenter.errors import (
    Conflict,
    InvalidBank,
    NotFound,
    NotPendingQuestion,
    Unprocessable,
)
from callcenter.events import CHANNEL, Event, EventBus, Subscription
from callcenter.http.problems import first_error

Q = load_queries("callcenter.agent_assist.knowledge", "queries.sql")
M = TypeVar("M", Question, Treatment)
Change = Callable[["Bank"], "Bank"]

#: Published whenever a question or a treatment changes: caches of the bank reload.
BANK_CHANGED = Event("questions", "bank")


@dataclass(frozen=True)
class Bank:
    """Every question and treatment rule, inactive ones included.

    The pure functions skip inactive entries themselves; inactive questions
    stay in the snapshot because their ``fresh_days`` still decide whether
    the answers given to them count.
    """

    questions: tuple[Question, ...]
    treatments: tuple[Treatment, ...]

    @property
    def active_questions(self) -> list[Question]:
        return [q for q in self.questions if q.active]

    @property
    def active_treatments(self) -> list[Treatment]:
        return [t for t in self.treatments if t.active]

    def question(self, key: str) -> Question | None:
        return next((q for q in self.questions if q.key == key), None)


# -- reading the bank -------------------------------------------------------------

_QUESTION_FIELDS = tuple(Question.model_fields)
_TREATMENT_FIELDS = tuple(Treatment.model_fields)


def _question(row: asyncpg.Record) -> QuestionOut:
    return QuestionOut.model_validate(dict(row))


def _treatment(row: asyncpg.Record) -> TreatmentOut:
    return TreatmentOut.model_validate(dict(row))


async def list_questions(conn: Conn) -> list[QuestionOut]:
    return [_question(r) for r in await conn.fetch(Q["all_questions"])]


async def list_treatments(conn: Conn) -> list[TreatmentOut]:
    return [_treatment(r) for r in await conn.fetch(Q["all_treatments"])]


async def bank_snapshot(conn: Conn) -> Bank:
    """The whole bank as the pure functions take it."""
    questions = [
        Question.model_validate({k: r[k] for k in _QUESTION_FIELDS})
        for r in await conn.fetch(Q["all_questions"])
    ]
    treatments = [
        Treatment.model_validate({k: r[k] for k in _TREATMENT_FIELDS})
        for r in await conn.fetch(Q["all_treatments"])
    ]
    return Bank(tuple(questions), tuple(treatments))


async def get_question(conn: Conn, key: str) -> QuestionOut:
    row = await conn.fetchrow(Q["get_question"], key)
    if row is None:
        raise NotFound(f"no question {key!r}", field="key")
    return _question(row)


async def get_treatment(conn: Conn, key: str) -> TreatmentOut:
    row = await conn.fetchrow(Q["get_treatment"], key)
    if row is None:
        raise NotFound(f"no treatment {key!r}", field="key")
    return _treatment(row)


# -- changing the bank --------------------------------------------------------------


def _condition(entry: Question | Treatment) -> dict[str, Any] | None:
    return None if entry.condition is None else conditions.dump(entry.condition)


def question_params(question: Question, source: str) -> tuple[Any, ...]:
    """The ``upsert_question`` parameters."""
    return (
        question.key,
        question.text,
        question.kind.value,
        question.choices,
        question.min_value,
        question.max_value,
        _condition(question),
        question.priority,
        question.cooldown_days,
        question.fresh_days,
        question.active,
        source,
    )


def treatment_params(treatment: Treatment, source: str) -> tuple[Any, ...]:
    """The ``upsert_treatment`` parameters."""
    return (
        treatment.key,
        treatment.title,
        treatment.kind.value,
        treatment.detail,
        _condition(treatment),
        treatment.reason,
        treatment.priority,
        treatment.active,
        source,
    )


def kind_change(stored: AnswerKind) -> str:
    """Why the kind of an answered question stays."""
    return (
        f"has {stored.value} answers; changing its kind would leave them unreadable: "
        "deactivate it and add a new question instead"
    )


def describe_problem(problem: BankProblem, *, own: tuple[str, str] | None = None) -> str:
    """A problem in words; the entry is named unless it is ``own`` (the one being written)."""
    where = problem.field
    if own != (problem.kind, problem.key):
        where = f"{problem.kind} {problem.key!r}, {where}"
    return f"{where}: {problem.message}"


def _refuse(problems: Sequence[BankProblem], own: tuple[str, str]) -> None:
    if not problems:
        return
    first = problems[0]
    raise InvalidBank(
        describe_problem(first, own=own),
        field=first.field if (first.kind, first.key) == own else None,
        errors=[
            {"field": p.field, "entry": f"{p.kind} {p.key}", "message": p.message} for p in problems
        ],
    )


async def _new_problems(
    conn: Conn,
    change: Change,
    *,
    tiers: Collection[str] | None,
) -> tuple[Bank, list[BankProblem]]:
    """Lock the bank; return it and the problems ``change(bank)`` would add to it."""
    await conn.execute(Q["lock_bank"])
    bank = await bank_snapshot(conn)
    before = set(check_bank(bank.questions, bank.treatments, tiers=tiers))
    after: Bank = change(bank)
    problems = [
        p for p in check_bank(after.questions, after.treatments, tiers=tiers) if p not in before
    ]
    return bank, problems


def _with_question(question: Question) -> Change:
    def change(bank: Bank) -> Bank:
        others = tuple(q for q in bank.questions if q.key != question.key)
        return replace(bank, questions=(*others, question))

    return change


def _with_treatment(treatment: Treatment) -> Change:
    def change(bank: Bank) -> Bank:
        others = tuple(t for t in bank.treatments if t.key != treatment.key)
        return replace(bank, treatments=(*others, treatment))

    return change


async def put_question(
    conn: Conn, question: Question, *, tiers: Collection[str] | None = None
) -> tuple[QuestionOut, bool]:
    """Create or replace a question through the API (it becomes API-managed); ``True`` if new."""
    async with conn.transaction():
        bank, problems = await _new_problems(conn, _with_question(question), tiers=tiers)
        _refuse(problems, ("question", question.key))
        stored = bank.question(question.key)
        if (
            stored is not None
            and stored.kind is not question.kind
            and await conn.fetchval(Q["question_has_answers"], question.key)
        ):
            raise Conflict(f"question {question.key!r} {kind_change(stored.kind)}", field="kind")
        row = await conn.fetchrow(Q["upsert_question"], *question_params(question, "api"))
        return await get_question(conn, question.key), bool(row is not None and row["inserted"])


async def create_question(
    conn: Conn, question: Question, *, tiers: Collection[str] | None = None
) -> QuestionOut:
    async with conn.transaction():
        await conn.execute(Q["lock_bank"])
        if await conn.fetchrow(Q["get_question"], question.key) is not None:
            raise Conflict(
                f"question {question.key!r} exists; PUT or PATCH changes it", field="key"
            )
        created, _ = await put_question(conn, question, tiers=tiers)
        return created


async def patch_question(
    conn: Conn, key: str, patch: QuestionPatch, *, tiers: Collection[str] | None = None
) -> QuestionOut:
    async with conn.transaction():
        await conn.execute(Q["lock_bank"])
        current = await get_question(conn, key)
        merged = current.model_dump(include=set(Question.model_fields)) | patch.model_dump(
            exclude_unset=True
        )
        question = _revalidate(Question, merged)
        changed, _ = await put_question(conn, question, tiers=tiers)
        return changed


async def remove_question(conn: Conn, key: str) -> Removed:
    """Delete a question; one that has answers is deactivated instead, so its answers stay."""
    async with conn.transaction():
        await conn.execute(Q["lock_bank"])
        await get_question(conn, key)
        if await conn.fetchval(Q["question_has_answers"], key):
            await conn.execute(Q["deactivate_question"], key)
            return Removed(
                key=key,
                deleted=False,
                deactivated=True,
                detail=f"question {key!r} has answers, so it was deactivated instead of deleted: "
                "it is no longer asked and its answers are kept",
            )

        def without(bank: Bank) -> Bank:
            return replace(bank, questions=tuple(q for q in bank.questions if q.key != key))

        _, problems = await _new_problems(conn, without, tiers=None)
        if problems:
            readers = ", ".join(sorted({f"{p.kind} {p.key!r}" for p in problems}))
            raise Conflict(
                f"question {key!r} is read by the conditions of {readers}; change those first",
                field="key",
            )
        await conn.execute(Q["delete_question"], key)
        return Removed(key=key, deleted=True, deactivated=False, detail=f"question {key!r} deleted")


async def put_treatment(
    conn: Conn, treatment: Treatment, *, tiers: Collection[str] | None = None
) -> tuple[TreatmentOut, bool]:
    """Create or replace a treatment through the API; ``True`` if new."""
    async with conn.transaction():
        _, problems = await _new_problems(conn, _with_treatment(treatment), tiers=tiers)
        _refuse(problems, ("treatment", treatment.key))
        row = await conn.fetchrow(Q["upsert_treatment"], *treatment_params(treatment, "api"))
        return await get_treatment(conn, treatment.key), bool(row is not None and row["inserted"])


async def create_treatment(
    conn: Conn, treatment: Treatment, *, tiers: Collection[str] | None = None
) -> TreatmentOut:
    async with conn.transaction():
        await conn.execute(Q["lock_bank"])
        if await conn.fetchrow(Q["get_treatment"], treatment.key) is not None:
            raise Conflict(
                f"treatment {treatment.key!r} exists; PUT or PATCH changes it", field="key"
            )
        created, _ = await put_treatment(conn, treatment, tiers=tiers)
        return created


async def patch_treatment(
    conn: Conn, key: str, patch: TreatmentPatch, *, tiers: Collection[str] | None = None
) -> TreatmentOut:
    async with conn.transaction():
        await conn.execute(Q["lock_bank"])
        current = await get_treatment(conn, key)
        merged = current.model_dump(include=set(Treatment.model_fields)) | patch.model_dump(
            exclude_unset=True
        )
        changed, _ = await put_treatment(conn, _revalidate(Treatment, merged), tiers=tiers)
        return changed


async def remove_treatment(conn: Conn, key: str) -> Removed:
    async with conn.transaction():
        await conn.execute(Q["lock_bank"])
        status = await conn.execute(Q["delete_treatment"], key)
        if status.endswith(" 0"):
            raise NotFound(f"no treatment {key!r}", field="key")
    return Removed(key=key, deleted=True, deactivated=False, detail=f"treatment {key!r} deleted")


def _revalidate(model: type[M], data: dict[str, Any]) -> M:
    """A patched entry checked as a whole (a kind changed without its choices, say): 422."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        field, detail = first_error(exc)
        raise Unprocessable(detail, field=field) from None


async def announce(conn: Conn, bus: EventBus | None = None) -> None:
    """Tell every instance the bank changed.

    Through ``bus`` when the caller has one (local subscribers hear it at
    once); without one (at start, from the CLI) by ``pg_notify`` directly,
    which inside a transaction goes out at commit.
    """
    if bus is not None:
        await bus.publish(conn, [BANK_CHANGED])
    else:
        await conn.execute(Q["notify_bank"], CHANNEL, BANK_CHANGED.encode())


# -- answers -----------------------------------------------------------------------


def _answer(row: asyncpg.Record) -> Answer:
    return Answer.model_validate(dict(row))


async def latest_answer_rows(conn: Conn, customer_id: int) -> list[Answer]:
    """The latest answer (or skip) to every question the customer was asked."""
    return [_answer(r) for r in await conn.fetch(Q["latest_answers"], customer_id)]


def _stored(answers: Sequence[Answer]) -> dict[str, StoredAnswer]:
    return {a.question_key: StoredAnswer(a.value, a.skipped, a.answered_at) for a in answers}


async def latest_answers(conn: Conn, customer_id: int) -> dict[str, StoredAnswer]:
    """The latest answer (or skip) per question key: what ``pending_question`` takes."""
    return _stored(await latest_answer_rows(conn, customer_id))


async def _profile(conn: Conn, customer_id: int, *, lock: bool = False) -> asyncpg.Record:
    query = Q["customer_facts" if lock else "customer_profile"]
    row: asyncpg.Record | None = await conn.fetchrow(query, customer_id)
    if row is None:
        raise NotFound(f"no customer with id {customer_id}", field="customer_id")
    return row


def _facts(row: asyncpg.Record) -> Facts:
    return Facts(
        tier=row["tier"], lifetime_value=row["lifetime_value"], annual_margin=row["annual_margin"]
    )


async def customer_facts(
    conn: Conn, customer_id: int, now: datetime, *, bank: Bank | None = None
) -> Facts:
    """Tier, value, margin and current answers: what treatment conditions read."""
    bank = bank if bank is not None else await bank_snapshot(conn)
    profile = _facts(await _profile(conn, customer_id))
    answers = current_answers(bank.questions, await latest_answers(conn, customer_id), now)
    return replace(profile, answers=answers)


async def pending_for(
    conn: Conn, customer_id: int, now: datetime, *, bank: Bank | None = None
) -> Question | None:
    """The customer's pending question now (404 for an unknown customer)."""
    bank = bank if bank is not None else await bank_snapshot(conn)
    profile = _facts(await _profile(conn, customer_id))
    latest = await latest_answers(conn, customer_id)
    return pending_question(bank.questions, latest, now, profile=profile)


async def treatments_for(
    conn: Conn, customer_id: int, now: datetime, *, bank: Bank | None = None
) -> list[MatchedTreatment]:
    """The treatment rules that apply to the customer now, each with its reasons."""
    bank = bank if bank is not None else await bank_snapshot(conn)
    return matching(bank.treatments, await customer_facts(conn, customer_id, now, bank=bank))


async def customer_question(
    conn: Conn, customer_id: int, now: datetime, *, bank: Bank | None = None
) -> CustomerQuestion:
    """The pending question and the latest answers, as ``GET .../question`` shows them."""
    bank = bank if bank is not None else await bank_snapshot(conn)
    profile = _facts(await _profile(conn, customer_id))
    rows = await latest_answer_rows(conn, customer_id)
    latest = _stored(rows)
    return CustomerQuestion(
        customer_id=customer_id,
        pending=pending_question(bank.questions, latest, now, profile=profile),
        answers=[
            LatestAnswer(
                **a.model_dump(),
                current=is_current(bank.question(a.question_key), latest[a.question_key], now),
            )
            for a in rows
        ],
    )


async def store_answer(
    conn: Conn,
    *,
    customer_id: int,
    question_key: str,
    value: Any = None,
    skipped: bool = False,
    now: datetime,
    call_id: int | None = None,
    agent_id: int | None = None,
    interaction_id: int | None = None,
    bank: Bank | None = None,
) -> AnswerRecorded:
    """Check and store an answer (or a skip); say whether it was new and what is pending next.

    * The question must be the customer's pending one, or the one shown on
      ``call_id`` (``calls.question_key``), even if the bank changed since:
      else 409 ``NotPendingQuestion`` (``field="answer"``).
    * The answer must fit the question's kind (``check_answer``): else 422.
    * The same answer to the same question on the same call again is a
      retry: nothing is stored twice, ``stored`` is false. A different
      answer on that call is a 409.
    * An answer (not a skip) sets ``customers.needs[question_key]``.
    """
    check_skip(value, skipped)
    async with _atomic(conn):
        profile_row = await _profile(conn, customer_id, lock=True)
        check_not_merged(customer_id, profile_row["merged_into"])
        bank = bank if bank is not None else await bank_snapshot(conn)
        question = bank_question(bank, question_key)
        # Read after the lock, so an answer committed by whoever held it is seen.
        context = await conn.fetchrow(Q["answer_context"], customer_id, call_id, question_key)
        assert context is not None  # one row, whatever the call
        shown: str | None = None
        if call_id is not None:
            shown = _call_question(context, call_id, customer_id)
            if context["answered_on_call"]:
                earlier = await conn.fetchrow(Q["answer_on_call"], call_id, question_key)
                if earlier is not None:
                    return await _retry(
                        conn, earlier, question, value, skipped, customer_id, now, bank
                    )
        profile = _facts(profile_row)
        latest = _stored_json(context["latest"])
        pending = pending_question(bank.questions, latest, now, profile=profile)
        allowed = {k for k in (pending.key if pending else None, shown) if k is not None}
        if question_key not in allowed:
            now_pending = f"{pending.key!r} is" if pending is not None else "none is"
            raise NotPendingQuestion(
                f"question {question_key!r} is not the pending one ({now_pending})",
                field="answer",
            )
        normal = None if skipped else check_answer(question, value)
        # The needs profile is set in the same statement (not for a skip).
        row = await conn.fetchrow(
            Q["insert_answer"],
            customer_id,
            question_key,
            normal,
            skipped,
            now,
            call_id,
            interaction_id,
            agent_id,
        )
        if row is None:  # the call's answer is there already (the customer lock makes it rare)
            earlier = await conn.fetchrow(Q["answer_on_call"], call_id, question_key)
            if earlier is None:
                raise Conflict(f"question {question_key!r} could not be stored; try again")
            return await _retry(conn, earlier, question, value, skipped, customer_id, now, bank)
        latest[question_key] = StoredAnswer(normal, skipped, now)
        return AnswerRecorded(
            answer=_answer(row),
            stored=True,
            next=pending_question(bank.questions, latest, now, profile=profile),
        )


def _atomic(conn: Conn) -> contextlib.AbstractAsyncContextManager[Any]:
    """A transaction, or, inside the caller's, that one: an error then undoes the
    caller's whole transaction, as it would anyway, and the savepoint's two round
    trips (``SAVEPOINT``, ``RELEASE``) are saved."""
    if conn.is_in_transaction():
        return contextlib.nullcontext()
    return conn.transaction()


def _stored_json(rows: Sequence[dict[str, Any]]) -> dict[str, StoredAnswer]:
    """The latest answer per question from ``answer_context``'s jsonb (as ``latest_answers``)."""
    return {
        r["question_key"]: StoredAnswer(
            r["value"], r["skipped"], datetime.fromisoformat(r["answered_at"])
        )
        for r in rows
    }


def check_skip(value: Any, skipped: bool) -> None:
    """An answer is a value or a skip, never both: else 422 (``field="answer"``)."""
    if skipped and value is not None:
        raise Unprocessable("give an answer or skip the question, not both", field="answer")


def check_not_merged(customer_id: int, merged_into: int | None) -> None:
    """A merged customer's answers go to the one it was merged into: else 409."""
    if merged_into is not None:
        raise Conflict(
            f"customer {customer_id} was merged into {merged_into}; record the answer there",
            field="customer_id",
        )


def bank_question(bank: Bank, key: str) -> Question:
    """The question ``key`` from the bank (inactive ones too), or 422."""
    question = bank.question(key)
    if question is None:
        raise Unprocessable(f"no question {key!r}", field="question_key")
    return question


def check_retry(
    key: str, call_id: int, earlier: Any, earlier_skipped: bool, normal: Any, skipped: bool
) -> None:
    """The answer ``normal`` (or a skip) to question ``key``, which call ``call_id`` has
    ``earlier`` already: a retry if it is the same (nothing more is stored), else 409."""
    if earlier_skipped != skipped or earlier != normal:
        said = "skipped" if earlier_skipped else f"answered {earlier!r}"
        raise Conflict(f"question {key!r} was already {said} on call {call_id}", field="answer")


async def record_answer(
    conn: Conn,
    *,
    customer_id: int,
    call_id: int | None,
    agent_id: int | None,
    interaction_id: int | None,
    question_key: str,
    value: Any = None,
    skipped: bool = False,
    now: datetime,
    bank: Bank | None = None,
) -> Question | None:
    """Store an answer as ``store_answer`` does; return the question pending next."""
    recorded = await store_answer(
        conn,
        customer_id=customer_id,
        question_key=question_key,
        value=value,
        skipped=skipped,
        now=now,
        call_id=call_id,
        agent_id=agent_id,
        interaction_id=interaction_id,
        bank=bank,
    )
    return recorded.next


def _call_question(context: asyncpg.Record, call_id: int, customer_id: int) -> str | None:
    """The question shown on call ``call_id`` (from ``answer_context``), if it is the
    customer's call; a clear error otherwise."""
    if not context["call_found"]:
        raise NotFound(f"no call with id {call_id}", field="call_id")
    if context["call_customer_id"] != customer_id:
        raise Conflict(f"call {call_id} is not customer {customer_id}'s call", field="call_id")
    shown: str | None = context["shown"]
    return shown


async def _retry(
    conn: Conn,
    earlier: asyncpg.Record,
    question: Question,
    value: Any,
    skipped: bool,
    customer_id: int,
    now: datetime,
    bank: Bank,
) -> AnswerRecorded:
    """An answer to a question already answered on this call: a retry, or a conflict."""
    normal = None if skipped else check_answer(question, value)
    check_retry(
        question.key, earlier["call_id"], earlier["value"], earlier["skipped"], normal, skipped
    )
    profile = _facts(await _profile(conn, customer_id))
    latest = await latest_answers(conn, customer_id)
    return AnswerRecorded(
        answer=_answer(earlier),
        stored=False,
        next=pending_question(bank.questions, latest, now, profile=profile),
    )


# -- a cache of the bank for hot paths ------------------------------------------------


class BankCache:
    """The bank in memory, reloaded after it changes.

    Any instance's change publishes ``questions:bank``; a ``resync`` (events
    may have been lost) reloads too, and so does age, so a lost notification
    costs at most ``max_age`` seconds of an old bank.
    """

    def __init__(self, pool: asyncpg.Pool[Any], *, max_age: float = 30.0) -> None:
        self._pool = pool
        self._max_age = max_age
        self._generation = 0
        self._bank: tuple[int, float, Bank] | None = None

    def invalidate(self) -> None:
        self._generation += 1

    async def get(self, conn: Conn | None = None) -> Bank:
        cached = self._bank
        if (
            cached is not None
            and cached[0] == self._generation
            and time.monotonic() - cached[1] < self._max_age
        ):
            return cached[2]
        generation, loaded_at = self._generation, time.monotonic()
        if conn is not None:
            bank = await bank_snapshot(conn)
        else:
            async with self._pool.acquire() as own:
                bank = await bank_snapshot(own)
        self._bank = (generation, loaded_at, bank)
        return bank

    @contextlib.asynccontextmanager
    async def running(self, bus: EventBus) -> AsyncIterator[BankCache]:
        """Follow the bus for the life of the block."""
        sub = bus.subscribe(100, kinds={BANK_CHANGED.kind})
        task = asyncio.create_task(self._follow(sub), name="assist-bank-cache")
        try:
            yield self
        finally:
            bus.unsubscribe(sub)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _follow(self, sub: Subscription) -> None:
        while True:
            event: Event = await sub.get()
            if event.kind in (BANK_CHANGED.kind, "resync"):
                self.invalidate()
