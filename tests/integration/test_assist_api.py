"""The question bank, treatment rules and answers through HTTP, on a real PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeAlias

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from tests.conftest import AppFactory
from tests.integration.assist_helpers import Pool, age_answers, bank_rows, write_bank
from tests.integration.queue_helpers import make_customer

Client: TypeAlias = "TestClient[Any, Any]"
Json: TypeAlias = dict[str, Any]


@pytest.fixture
async def api(app_factory: AppFactory, tmp_path: Path) -> Client:
    return await app_factory(questions_file=write_bank(tmp_path))


async def _json(resp: ClientResponse, status: int) -> Json:
    assert resp.status == status, await resp.text()
    body: Json = await resp.json()
    return body


async def _problem(resp: ClientResponse, status: int, field: str | None = None) -> Json:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/problem+json"
    body: Json = await resp.json()
    assert body["status"] == status and body["detail"]
    if field is not None:
        assert body["field"] == field, body
    return body


async def _answer(client: Client, customer_id: int, key: str, answer: Any = None, **kw: Any) -> Any:
    body = {"question_key": key, **({"value": answer} if answer is not None else {}), **kw}
    return await client.post(f"/api/customers/{customer_id}/answers", json=body)


async def _pending(client: Client, customer_id: int) -> str | None:
    body = await _json(await client.get(f"/api/customers/{customer_id}/question"), 200)
    return body["pending"]["key"] if body["pending"] else None


# -- the bank -----------------------------------------------------------------------


async def test_the_file_loaded_at_start_is_listed_in_asking_order(api: Client) -> None:
    body = await _json(await api.get("/api/questions"), 200)
    assert [q["key"] for q in body["questions"]] == [
        "cards_elsewhere",
        "card_count",
        "contact_channel",
    ]
    card_count = body["questions"][1]
    assert card_count["source"] == "file"
    assert card_count["condition"] == {"answer": "cards_elsewhere", "eq": "yes"}
    assert card_count["min_value"] == 1
    one = await _json(await api.get("/api/questions/contact_channel"), 200)
    assert one["choices"] == ["phone", "email"] and one["fresh_days"] is None
    treatments = await _json(await api.get("/api/treatments"), 200)
    assert [t["key"] for t in treatments["treatments"]] == ["premium_card", "email_follow_up"]


async def test_question_crud(api: Client) -> None:
    new = {
        "key": "home_plans",
        "text": "Are you planning to buy a home?",
        "kind": "choice",
        "choices": ["no", "within a year"],
        "condition": {"tier": ["platinum", "gold"]},
        "priority": 50,
    }
    created = await _json(await api.post("/api/questions", json=new), 201)
    assert created["source"] == "api" and created["cooldown_days"] == 7 and created["active"]
    await _problem(await api.post("/api/questions", json=new), 409, "key")

    patched = await _json(
        await api.patch("/api/questions/home_plans", json={"priority": 5, "condition": None}),
        200,
    )
    assert patched["priority"] == 5 and patched["condition"] is None
    assert patched["choices"] == new["choices"]
    await _problem(await api.patch("/api/questions/home_plans", json={"text": None}), 422, "text")

    replaced = await api.put(
        "/api/questions/home_plans", json={"text": "Buying a home soon?", "kind": "yes_no"}
    )
    body = await _json(replaced, 200)
    assert body["kind"] == "yes_no" and body["choices"] == [] and body["priority"] == 100
    fresh = await api.put("/api/questions/note", json={"text": "Anything else?", "kind": "text"})
    assert (await _json(fresh, 201))["key"] == "note"

    removed = await _json(await api.delete("/api/questions/note"), 200)
    assert removed == {
        "key": "note",
        "deleted": True,
        "deactivated": False,
        "detail": "question 'note' deleted",
    }
    await _problem(await api.get("/api/questions/note"), 404)
    await _problem(await api.delete("/api/questions/note"), 404)
    await _problem(await api.get("/api/questions/Not-A-Key"), 404)


async def test_a_patch_that_breaks_the_question_is_refused(api: Client) -> None:
    resp = await api.patch("/api/questions/cards_elsewhere", json={"kind": "choice"})
    body = await _problem(resp, 422)
    assert "at least two choices" in body["detail"]


async def test_put_cannot_rename(api: Client) -> None:
    resp = await api.put(
        "/api/questions/card_count", json={"key": "cards", "text": "x", "kind": "text"}
    )
    await _problem(resp, 422, "key")


async def test_bad_conditions_are_422_and_change_nothing(api: Client, pool: Pool) -> None:
    before = await bank_rows(pool)
    unknown = {
        "key": "ghost_follow_up",
        "text": "?",
        "kind": "text",
        "condition": {"all": [{"answered": "ghost"}]},
    }
    body = await _problem(await api.post("/api/questions", json=unknown), 422)
    assert body["field"] == "condition.all[0].answered"
    assert "reads question 'ghost', which is not in the bank" in body["detail"]

    # cards_elsewhere asked only after card_count, which is asked only after cards_elsewhere
    cycle = {"condition": {"answered": "card_count"}}
    body = await _problem(await api.patch("/api/questions/cards_elsewhere", json=cycle), 422)
    assert "cycle (card_count -> cards_elsewhere -> card_count)" in body["detail"]

    # a kind change that makes a treatment compare with an impossible answer
    body = await _problem(
        await api.patch("/api/questions/cards_elsewhere", json={"kind": "number"}), 422
    )
    assert body["detail"].startswith("question 'card_count', condition.eq:")
    assert any(e["entry"] == "treatment premium_card" for e in body["errors"])

    bad_tier = {"condition": {"tier": ["diamond"]}}
    body = await _problem(await api.patch("/api/treatments/premium_card", json=bad_tier), 422)
    assert body["field"] == "condition.tier" and "unknown tier 'diamond'" in body["detail"]

    shape = {"condition": {"answer": "card_count"}}
    body = await _problem(await api.patch("/api/questions/contact_channel", json=shape), 422)
    assert "needs an operator" in body["detail"]
    assert await bank_rows(pool) == before


async def test_a_question_read_by_others_cannot_be_deleted(api: Client, pool: Pool) -> None:
    before = await bank_rows(pool)
    body = await _problem(await api.delete("/api/questions/cards_elsewhere"), 409, "key")
    assert (
        "question 'card_count'" in body["detail"] and "treatment 'premium_card'" in body["detail"]
    )
    assert await bank_rows(pool) == before


async def test_a_question_with_answers_is_deactivated_not_deleted(api: Client) -> None:
    customer = await make_customer(api, "C1", 100, "+12125550100")
    await _json(await _answer(api, customer, "cards_elsewhere", "no"), 201)
    await _json(await _answer(api, customer, "contact_channel", "email"), 201)
    removed = await _json(await api.delete("/api/questions/contact_channel"), 200)
    assert removed["deleted"] is False and removed["deactivated"] is True
    assert "deactivated instead of deleted" in removed["detail"]
    kept = await _json(await api.get("/api/questions/contact_channel"), 200)
    assert kept["active"] is False and kept["source"] == "api"
    # its answer still counts for the treatments
    matched = await _json(await api.get(f"/api/customers/{customer}/treatments"), 200)
    assert [t["key"] for t in matched["treatments"]] == ["email_follow_up"]


async def test_treatment_crud(api: Client) -> None:
    rule = {
        "key": "platinum_tone",
        "title": "Greet by name",
        "kind": "tone",
        "condition": {"tier": ["platinum"]},
        "reason": "They expect to be known.",
    }
    created = await _json(await api.post("/api/treatments", json=rule), 201)
    assert created["source"] == "api" and created["detail"] == ""
    await _problem(await api.post("/api/treatments", json=rule), 409, "key")
    patched = await _json(
        await api.patch("/api/treatments/platinum_tone", json={"condition": None}), 200
    )
    assert patched["condition"] is None
    put = await api.put("/api/treatments/platinum_tone", json=rule | {"key": None, "priority": 1})
    assert (await _json(put, 200))["priority"] == 1
    await _problem(await api.put("/api/treatments/x", json={"title": "t"}), 422)
    removed = await _json(await api.delete("/api/treatments/platinum_tone"), 200)
    assert removed["deleted"] is True
    await _problem(await api.delete("/api/treatments/platinum_tone"), 404)
    await _problem(await api.get("/api/treatments/platinum_tone"), 404)


async def test_openapi_describes_the_bank_and_conditions(api: Client) -> None:
    doc = await _json(await api.get("/openapi.json"), 200)
    for path in (
        "/api/questions",
        "/api/questions/{key}",
        "/api/treatments/{key}",
        "/api/customers/{customer_id}/question",
        "/api/customers/{customer_id}/answers",
    ):
        assert path in doc["paths"], path
    assert set(doc["paths"]["/api/questions/{key}"]) == {"get", "put", "patch", "delete"}
    schemas = doc["components"]["schemas"]
    assert {"AnswerTest", "AllOf", "Not", "QuestionOut", "AnswerIn"} <= set(schemas)
    assert "in" in schemas["AnswerTest"]["properties"]


# -- answers ----------------------------------------------------------------------------


async def test_answers_move_the_customer_along_the_bank(api: Client, pool: Pool) -> None:
    customer = await make_customer(api, "C1", 30000, "+12125550100")
    first = await _json(await api.get(f"/api/customers/{customer}/question"), 200)
    assert first["pending"]["key"] == "cards_elsewhere" and first["answers"] == []

    recorded = await _json(await _answer(api, customer, "cards_elsewhere", True), 201)
    assert recorded["stored"] is True
    assert recorded["answer"]["value"] == "yes" and recorded["answer"]["skipped"] is False
    assert recorded["next"]["key"] == "card_count"  # the follow-up, because of the yes

    recorded = await _json(await _answer(api, customer, "card_count", 3.0), 201)
    assert recorded["answer"]["value"] == 3
    assert recorded["next"]["key"] == "contact_channel"
    recorded = await _json(await _answer(api, customer, "contact_channel", " Email "), 201)
    assert recorded["answer"]["value"] == "email" and recorded["next"] is None

    profile = await _json(await api.get(f"/api/customers/{customer}"), 200)
    assert profile["needs"] == {
        "cards_elsewhere": "yes",
        "card_count": 3,
        "contact_channel": "email",
    }
    state = await _json(await api.get(f"/api/customers/{customer}/question"), 200)
    assert state["pending"] is None
    assert [(a["question_key"], a["current"]) for a in state["answers"]] == [
        ("card_count", True),
        ("cards_elsewhere", True),
        ("contact_channel", True),
    ]
    matched = await _json(await api.get(f"/api/customers/{customer}/treatments"), 200)
    assert [t["key"] for t in matched["treatments"]] == ["premium_card", "email_follow_up"]
    assert matched["treatments"][0]["because"] == [
        "lifetime value 30000.00",
        "cards_elsewhere = yes",
    ]
    # half a year later the cards answer is stale: asked again, its follow-up waits
    await age_answers(pool, customer, "cards_elsewhere", 181)
    assert await _pending(api, customer) == "cards_elsewhere"
    matched = await _json(await api.get(f"/api/customers/{customer}/treatments"), 200)
    assert [t["key"] for t in matched["treatments"]] == ["email_follow_up"]


async def test_a_wrong_answer_is_refused_and_nothing_is_stored(api: Client, pool: Pool) -> None:
    customer = await make_customer(api, "C1", 100, "+12125550100")
    await _json(await _answer(api, customer, "cards_elsewhere", "yes"), 201)

    body = await _problem(await _answer(api, customer, "card_count", "three"), 422, "answer")
    assert "with a number, not the text 'three'" in body["detail"]
    body = await _problem(await _answer(api, customer, "card_count", 0), 422, "answer")
    assert "below 1" in body["detail"]
    body = await _problem(await _answer(api, customer, "card_count", True), 422, "answer")
    assert "not the boolean true" in body["detail"]
    await _problem(await _answer(api, customer, "card_count"), 422, "answer")
    await _problem(await _answer(api, customer, "card_count", 2, skipped=True), 422, "answer")

    body = await _problem(await _answer(api, customer, "contact_channel", "fax"), 409, "answer")
    assert body["detail"] == "question 'contact_channel' is not the pending one ('card_count' is)"
    body = await _problem(await _answer(api, customer, "nope", 1), 422, "question_key")
    await _problem(await _answer(api, 999999, "card_count", 1), 404)
    await _problem(await api.post(f"/api/customers/{customer}/answers", json={}), 422)

    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM answers") == 1
        assert await conn.fetchval("SELECT needs FROM customers WHERE id = $1", customer) == {
            "cards_elsewhere": "yes"
        }
    # the earlier answer is intact and the pending question has not moved
    assert await _pending(api, customer) == "card_count"


async def test_a_choice_not_in_the_list_is_refused(api: Client) -> None:
    customer = await make_customer(api, "C1", 100, "+12125550100")
    await _json(await _answer(api, customer, "cards_elsewhere", "no"), 201)
    body = await _problem(await _answer(api, customer, "contact_channel", "fax"), 422, "answer")
    assert body["detail"] == (
        "'fax' is not a choice of question 'contact_channel'; the choices are phone, email"
    )


async def test_a_skip_waits_out_its_cooldown(api: Client, pool: Pool) -> None:
    customer = await make_customer(api, "C1", 100, "+12125550100")
    skipped = await _json(await _answer(api, customer, "cards_elsewhere", skipped=True), 201)
    assert skipped["answer"]["skipped"] is True and skipped["answer"]["value"] is None
    assert skipped["next"]["key"] == "contact_channel"
    profile = await _json(await api.get(f"/api/customers/{customer}"), 200)
    assert profile["needs"] == {}  # a skip says nothing about the customer
    await age_answers(pool, customer, "cards_elsewhere", 13.9)
    assert await _pending(api, customer) == "contact_channel"
    await age_answers(pool, customer, "cards_elsewhere", 0.2)
    assert await _pending(api, customer) == "cards_elsewhere"


async def test_the_cache_follows_bank_changes(api: Client) -> None:
    customer = await make_customer(api, "C1", 100, "+12125550100")
    assert await _pending(api, customer) == "cards_elsewhere"
    resp = await api.patch("/api/questions/contact_channel", json={"priority": 1})
    await _json(resp, 200)
    assert await _pending(api, customer) == "contact_channel"
    await _json(await api.patch("/api/questions/contact_channel", json={"active": False}), 200)
    assert await _pending(api, customer) == "cards_elsewhere"


async def test_the_kind_of_an_answered_question_cannot_change(api: Client, pool: Pool) -> None:
    customer = await make_customer(api, "C1", 100, "+12125550100")
    await _json(await _answer(api, customer, "cards_elsewhere", "no"), 201)
    await _json(await _answer(api, customer, "contact_channel", "phone"), 201)
    before = await bank_rows(pool)
    resp = await api.patch("/api/questions/contact_channel", json={"kind": "text", "choices": []})
    body = await _problem(resp, 409, "kind")
    assert body["detail"] == (
        "question 'contact_channel' has choice answers; changing its kind would leave them "
        "unreadable: deactivate it and add a new question instead"
    )
    assert await bank_rows(pool) == before
    # other changes are fine, and so is a kind change before anyone answered
    more = {"choices": ["phone", "email", "sms"]}
    resp = await api.patch("/api/questions/contact_channel", json=more)
    assert (await _json(resp, 200))["choices"] == ["phone", "email", "sms"]
    resp = await api.post("/api/questions", json={"key": "n", "text": "N?", "kind": "number"})
    await _json(resp, 201)
    assert (await _json(await api.patch("/api/questions/n", json={"kind": "text"}), 200))["kind"]


async def test_a_merged_unknown_caller_brings_its_answers(api: Client, pool: Pool) -> None:
    real = await make_customer(api, "C1", 30000, "+12125550100")
    identified = await _json(await api.post("/api/identify", json={"ani": "(415) 555-0132"}), 200)
    provisional = identified["customer"]["id"]
    await _json(await _answer(api, provisional, "cards_elsewhere", "yes"), 201)
    await _json(await _answer(api, provisional, "card_count", 2), 201)
    await _json(await _answer(api, real, "cards_elsewhere", "no"), 201)

    merge = await api.post(f"/api/customers/{provisional}/merge", json={"into_customer_id": real})
    assert merge.status == 200, await merge.text()
    answers = await pool.fetch(
        "SELECT customer_id, question_key FROM answers ORDER BY question_key, answered_at"
    )
    assert {r["customer_id"] for r in answers} == {real}
    assert len(answers) == 3
    # Both answered the cards question: the latest answer counts, here the real customer's.
    profile = await _json(await api.get(f"/api/customers/{real}"), 200)
    assert profile["needs"] == {"cards_elsewhere": "no", "card_count": 2}
