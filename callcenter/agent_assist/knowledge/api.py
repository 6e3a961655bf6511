"""REST endpoints of the question bank, the treatment rules and customers' answers.

``/api/questions...`` and ``/api/treatments...`` are the supervisor's; an
entry written here is managed by the API from then on (a file load leaves
it alone). ``/api/customers/{id}/question`` and ``.../answers`` let a web
form or a CRM ask and answer outside a call, with the same checks as the
agent's wrap-up.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from aiohttp import web

from callcenter import app_keys
from callcenter.agent_assist.knowledge import store
from callcenter.agent_assist.knowledge.models import (
    AnswerIn,
    AnswerRecorded,
    CustomerQuestion,
    CustomerTreatments,
    QuestionList,
    QuestionOut,
    QuestionPatch,
    QuestionPut,
    Removed,
    TreatmentList,
    TreatmentOut,
    TreatmentPatch,
    TreatmentPut,
)
from callcenter.agent_assist.knowledge.questions import Question
from callcenter.agent_assist.knowledge.treatments import Treatment
from callcenter.customers import audit
from callcenter.customers.value import ordered_tiers
from callcenter.errors import NotFound, Unprocessable
from callcenter.http.routing import Routes, path_id

routes = Routes("assist")

_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}")


def _key(request: web.Request) -> str:
    """The entry key in the path; a key that cannot exist names nothing (404)."""
    key = request.match_info["key"]
    if not _KEY.fullmatch(key):
        raise NotFound(f"no entry with key {key!r}", field="key")
    return key


def _tiers(request: web.Request) -> list[str]:
    return ordered_tiers(request.app[app_keys.CUSTOMER_RULES].thresholds)


def _body_key(path_key: str, body_key: str | None) -> str:
    if body_key is not None and body_key != path_key:
        raise Unprocessable(
            f"the body's key {body_key!r} differs from the path's {path_key!r}; "
            "keys cannot be renamed",
            field="key",
        )
    return path_key


async def _announce(request: web.Request) -> None:
    async with app_keys.pool(request.app).acquire() as conn:
        await store.announce(conn, request.app[app_keys.BUS])


def _now() -> datetime:
    return datetime.now(UTC)


# -- questions ----------------------------------------------------------------------


@routes.route(
    "GET",
    "/api/questions",
    summary="The question bank, in asking order",
    response=QuestionList,
    access="supervisor",
)
async def list_questions(request: web.Request) -> QuestionList:
    async with app_keys.pool(request.app).acquire() as conn:
        return QuestionList(questions=await store.list_questions(conn))


@routes.route(
    "POST",
    "/api/questions",
    summary="Add a question (its condition may only read questions in the bank, without cycles)",
    body=Question,
    response=QuestionOut,
    status=201,
    errors=[409],
)
async def create_question(request: web.Request, body: Question) -> QuestionOut:
    async with app_keys.pool(request.app).acquire() as conn:
        created = await store.create_question(conn, body, tiers=_tiers(request))
    await _announce(request)
    return created


@routes.route(
    "GET", "/api/questions/{key}", summary="One question", response=QuestionOut, access="supervisor"
)
async def get_question(request: web.Request) -> QuestionOut:
    async with app_keys.pool(request.app).acquire() as conn:
        return await store.get_question(conn, _key(request))


@routes.route(
    "PUT",
    "/api/questions/{key}",
    summary="Create or replace a question (201 when new)",
    body=QuestionPut,
    response=QuestionOut,
)
async def put_question(request: web.Request, body: QuestionPut) -> web.Response:
    key = _body_key(_key(request), body.key)
    question = Question.model_validate(body.model_dump(exclude={"key"}) | {"key": key})
    async with app_keys.pool(request.app).acquire() as conn:
        stored, created = await store.put_question(conn, question, tiers=_tiers(request))
    await _announce(request)
    return web.json_response(text=stored.model_dump_json(), status=201 if created else 200)


@routes.route(
    "PATCH",
    "/api/questions/{key}",
    summary="Change some fields of a question",
    body=QuestionPatch,
    response=QuestionOut,
)
async def patch_question(request: web.Request, body: QuestionPatch) -> QuestionOut:
    async with app_keys.pool(request.app).acquire() as conn:
        changed = await store.patch_question(conn, _key(request), body, tiers=_tiers(request))
    await _announce(request)
    return changed


@routes.route(
    "DELETE",
    "/api/questions/{key}",
    summary="Delete a question; one that has answers is deactivated instead (answers are kept)",
    response=Removed,
    errors=[409],
)
async def delete_question(request: web.Request) -> Removed:
    async with app_keys.pool(request.app).acquire() as conn:
        removed = await store.remove_question(conn, _key(request))
    await _announce(request)
    return removed


# -- treatments -----------------------------------------------------------------------


@routes.route(
    "GET",
    "/api/treatments",
    summary="The treatment rules, by priority",
    response=TreatmentList,
    access="supervisor",
)
async def list_treatments(request: web.Request) -> TreatmentList:
    async with app_keys.pool(request.app).acquire() as conn:
        return TreatmentList(treatments=await store.list_treatments(conn))


@routes.route(
    "POST",
    "/api/treatments",
    summary="Add a treatment rule",
    body=Treatment,
    response=TreatmentOut,
    status=201,
    errors=[409],
)
async def create_treatment(request: web.Request, body: Treatment) -> TreatmentOut:
    async with app_keys.pool(request.app).acquire() as conn:
        created = await store.create_treatment(conn, body, tiers=_tiers(request))
    await _announce(request)
    return created


@routes.route(
    "GET",
    "/api/treatments/{key}",
    summary="One treatment rule",
    response=TreatmentOut,
    access="supervisor",
)
async def get_treatment(request: web.Request) -> TreatmentOut:
    async with app_keys.pool(request.app).acquire() as conn:
        return await store.get_treatment(conn, _key(request))


@routes.route(
    "PUT",
    "/api/treatments/{key}",
    summary="Create or replace a treatment rule (201 when new)",
    body=TreatmentPut,
    response=TreatmentOut,
)
async def put_treatment(request: web.Request, body: TreatmentPut) -> web.Response:
    key = _body_key(_key(request), body.key)
    treatment = Treatment.model_validate(body.model_dump(exclude={"key"}) | {"key": key})
    async with app_keys.pool(request.app).acquire() as conn:
        stored, created = await store.put_treatment(conn, treatment, tiers=_tiers(request))
    await _announce(request)
    return web.json_response(text=stored.model_dump_json(), status=201 if created else 200)


@routes.route(
    "PATCH",
    "/api/treatments/{key}",
    summary="Change some fields of a treatment rule",
    body=TreatmentPatch,
    response=TreatmentOut,
)
async def patch_treatment(request: web.Request, body: TreatmentPatch) -> TreatmentOut:
    async with app_keys.pool(request.app).acquire() as conn:
        changed = await store.patch_treatment(conn, _key(request), body, tiers=_tiers(request))
    await _announce(request)
    return changed


@routes.route(
    "DELETE", "/api/treatments/{key}", summary="Delete a treatment rule", response=Removed
)
async def delete_treatment(request: web.Request) -> Removed:
    async with app_keys.pool(request.app).acquire() as conn:
        removed = await store.remove_treatment(conn, _key(request))
    await _announce(request)
    return removed


# -- a customer's questions and answers ----------------------------------------------------


@routes.route(
    "GET",
    "/api/customers/{customer_id}/question",
    summary="The customer's pending learning question and the latest answer to each question",
    response=CustomerQuestion,
    access="supervisor",
)
async def customer_question(request: web.Request) -> CustomerQuestion:
    customer_id = path_id(request, "customer_id")
    async with app_keys.pool(request.app).acquire() as conn:
        bank = await request.app[app_keys.BANK_CACHE].get(conn)
        found = await store.customer_question(conn, customer_id, _now(), bank=bank)
        await audit.record(conn, audit.of_request(request, "question"), [customer_id])
        return found


@routes.route(
    "POST",
    "/api/customers/{customer_id}/answers",
    summary="Answer (or skip) the customer's pending question outside a call",
    body=AnswerIn,
    response=AnswerRecorded,
    status=201,
    errors=[409],
)
async def answer_question(request: web.Request, body: AnswerIn) -> AnswerRecorded:
    customer_id = path_id(request, "customer_id")
    async with app_keys.pool(request.app).acquire() as conn, conn.transaction():
        recorded = await store.store_answer(
            conn,
            customer_id=customer_id,
            question_key=body.question_key,
            value=body.value,
            skipped=body.skipped,
            now=_now(),
        )
        if recorded.stored:  # a retry that stored nothing changed nothing
            done = audit.of_request(
                request, "answer", question_key=body.question_key, skipped=body.skipped
            )
            await audit.record(conn, done, [customer_id])
        return recorded


@routes.route(
    "GET",
    "/api/customers/{customer_id}/treatments",
    summary="The treatment rules that apply to the customer now, each with its reasons",
    response=CustomerTreatments,
    access="supervisor",
)
async def customer_treatments(request: web.Request) -> CustomerTreatments:
    customer_id = path_id(request, "customer_id")
    async with app_keys.pool(request.app).acquire() as conn:
        bank = await request.app[app_keys.BANK_CACHE].get(conn)
        matched = await store.treatments_for(conn, customer_id, _now(), bank=bank)
        await audit.record(conn, audit.of_request(request, "treatments"), [customer_id])
    return CustomerTreatments(customer_id=customer_id, treatments=matched)
