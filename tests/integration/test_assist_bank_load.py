"""Loading the bank file: into the database, by the CLI and at service start."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from callcenter.agent_assist.knowledge.bank import load_bank_file
from callcenter.config import shipped_bank
from callcenter.errors import BankFileError
from tests.conftest import AppFactory
from tests.integration.assist_helpers import BANK, Pool, bank_rows, write_bank

TIERS = ["platinum", "gold", "silver", "standard"]


async def _load(pool: Pool, path: Path) -> Any:
    async with pool.acquire() as conn:
        return await load_bank_file(conn, path, tiers=TIERS)


async def _refused(pool: Pool, path: Path) -> list[str]:
    before = await bank_rows(pool)
    with pytest.raises(BankFileError) as raised:
        await _load(pool, path)
    assert await bank_rows(pool) == before, "a refused file changed the bank"
    return raised.value.errors


async def test_loading_twice_changes_nothing_the_second_time(pool: Pool, tmp_path: Path) -> None:
    path = write_bank(tmp_path)
    first = await _load(pool, path)
    assert first.created == [
        "question cards_elsewhere",
        "question card_count",
        "question contact_channel",
        "treatment premium_card",
        "treatment email_follow_up",
    ]
    stored = await bank_rows(pool)
    second = await _load(pool, path)
    assert second.created == second.updated == second.deactivated == []
    assert len(second.unchanged) == 5
    assert await bank_rows(pool) == stored


async def test_a_changed_file_updates_and_retires_entries(pool: Pool, tmp_path: Path) -> None:
    await _load(pool, write_bank(tmp_path))
    changed = BANK.replace("priority: 20\n", "priority: 2\n")
    # drop email_follow_up: the last treatment
    changed = changed[: changed.index("  - key: email_follow_up")]
    result = await _load(pool, write_bank(tmp_path, changed, "v2.yaml"))
    assert result.updated == ["question contact_channel"]
    assert result.deactivated == ["treatment email_follow_up"]
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT active, source FROM treatments WHERE key = 'email_follow_up'"
        )
        assert (row["active"], row["source"]) == (False, "file")
    # put back: active again
    back = await _load(pool, write_bank(tmp_path))
    assert back.updated == ["question contact_channel", "treatment email_follow_up"]


async def test_entries_managed_through_the_api_are_left_alone(
    app_factory: AppFactory, pool: Pool, tmp_path: Path
) -> None:
    path = write_bank(tmp_path)
    client = await app_factory(questions_file=path)
    resp = await client.patch("/api/questions/contact_channel", json={"text": "Phone or email?"})
    assert resp.status == 200
    result = await _load(pool, path)
    assert result.kept_api == ["question contact_channel"]
    assert result.updated == [] and result.deactivated == []
    got = await client.get("/api/questions/contact_channel")
    assert (await got.json())["text"] == "Phone or email?"


async def test_a_file_with_a_cycle_or_an_unknown_key_changes_nothing(
    pool: Pool, tmp_path: Path
) -> None:
    await _load(pool, write_bank(tmp_path))
    cycle = BANK.replace(
        "    priority: 10\n    cooldown_days: 14",
        "    condition: {answered: card_count}\n    priority: 10\n    cooldown_days: 14",
    )
    errors = await _refused(pool, write_bank(tmp_path, cycle, "cycle.yaml"))
    assert errors == [
        f"{tmp_path / 'cycle.yaml'}:13: question 'card_count': condition: questions depend on "
        "each other's answers in a cycle (card_count -> cards_elsewhere -> card_count): "
        "none of them could ever be asked"
    ]
    unknown = BANK.replace("{answer: contact_channel, eq: email}", "{answer: contact, eq: email}")
    errors = await _refused(pool, write_bank(tmp_path, unknown, "unknown.yaml"))
    assert errors == [
        f"{tmp_path / 'unknown.yaml'}:32: treatment 'email_follow_up': condition.answer: "
        "the condition reads question 'contact', which is not in the bank"
    ]
    tier = BANK.replace("{value: {gte: 25000}}", "{tier: [diamond]}")
    errors = await _refused(pool, write_bank(tmp_path, tier, "tier.yaml"))
    assert errors[0].endswith(
        "treatment 'premium_card': condition.all[0].tier: unknown tier 'diamond' in the "
        "condition; known tiers: platinum, gold, silver, standard"
    )


async def test_a_file_question_may_read_an_api_question(
    app_factory: AppFactory, pool: Pool, tmp_path: Path
) -> None:
    client = await app_factory(questions_file=None)
    made = await client.post(
        "/api/questions", json={"key": "segment", "text": "Segment?", "kind": "text"}
    )
    assert made.status == 201
    reader = BANK.replace(
        "{answer: cards_elsewhere, eq: yes}\n    priority: 11",
        "{answered: segment}\n    priority: 11",
    )
    result = await _load(pool, write_bank(tmp_path, reader))
    assert "question card_count" in result.created
    # and the file may not make a cycle through it
    resp = await client.patch(
        "/api/questions/segment", json={"condition": {"answered": "card_count"}}
    )
    assert resp.status == 422


async def test_the_shipped_bank_loads(pool: Pool) -> None:
    result = await _load(pool, shipped_bank())
    assert len(result.created) >= 14 and not result.updated


# -- the command line -----------------------------------------------------------------


def _cli(db_url: str, *args: str | Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = os.environ | {"CALLCENTER_DATABASE_URL": db_url, "COLUMNS": "500"} | env
    return subprocess.run(
        [sys.executable, "-m", "callcenter", *map(str, args)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_cli_loads_prints_changes_and_reports_errors_with_lines(
    db_url: str, pool: Pool, tmp_path: Path
) -> None:
    path = write_bank(tmp_path)
    done = await asyncio.to_thread(_cli, db_url, "assist", "load", path)
    assert done.returncode == 0, done.stderr
    assert "5 entries: 5 created, 0 updated, 0 unchanged, 0 deactivated" in done.stdout
    assert "created: question card_count" in done.stdout

    again = await asyncio.to_thread(_cli, db_url, "assist", "load", path)
    assert again.returncode == 0 and "0 created, 0 updated, 5 unchanged" in again.stdout

    before = await bank_rows(pool)
    bad = write_bank(
        tmp_path,
        BANK.replace("kind: number", "kind: integer").replace("[phone, email]", "[phone]"),
        "bad.yaml",
    )
    failed = await asyncio.to_thread(_cli, db_url, "assist", "load", bad)
    assert failed.returncode == 2
    assert failed.stdout.splitlines() == [
        f"{bad}:10: question 'card_count': kind: Input should be 'choice', 'yes_no', 'number' "
        "or 'text'",
        f"{bad}:14: question 'contact_channel': a choice question needs at least two choices",
    ]
    assert "nothing was loaded" in failed.stderr
    assert await bank_rows(pool) == before


async def test_service_refuses_to_start_with_a_bad_file(
    app_factory: AppFactory, pool: Pool, tmp_path: Path
) -> None:
    bad = write_bank(
        tmp_path, BANK.replace("eq: yes}\n    priority: 11", "eq: maybe}\n    priority: 11")
    )
    before = await bank_rows(pool)
    with pytest.raises(BankFileError) as raised:
        await app_factory(questions_file=bad)
    assert raised.value.errors == [
        f"{bad}:12: question 'card_count': condition.eq: question 'cards_elsewhere' can never "
        "be answered 'maybe': question 'cards_elsewhere' is answered yes or no (or "
        "true/false), not the text 'maybe'"
    ]
    assert await bank_rows(pool) == before


@pytest.mark.parametrize(
    ("change", "line", "fault"),
    [
        # the entry's own problem, reported with any others once the database is up
        (("kind: yes_no", "kind: yesno"), 4, "question 'cards_elsewhere': kind:"),
        # refused by the checks against the stored bank, after the database started
        (
            ("{answer: contact_channel, eq: email}", "{answer: contact, eq: email}"),
            32,
            "treatment 'email_follow_up': condition.answer: the condition reads question "
            "'contact', which is not in the bank",
        ),
    ],
)
async def test_serve_stops_at_start_with_the_file_line_error(
    db_url: str, pool: Pool, tmp_path: Path, change: tuple[str, str], line: int, fault: str
) -> None:
    bad = write_bank(tmp_path, BANK.replace(*change))
    done = await asyncio.to_thread(
        _cli,
        db_url,
        "serve",
        "--port",
        "0",
        CALLCENTER_QUESTIONS_FILE=str(bad),
        CALLCENTER_DATA_DIR=str(tmp_path),
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{bad}:{line}: {fault}" in done.stderr
    assert "not starting" in done.stderr
    assert "is serving" not in done.stderr
    assert await bank_rows(pool) == []


async def test_a_file_cannot_change_the_kind_of_an_answered_question(
    app_factory: AppFactory, pool: Pool, tmp_path: Path
) -> None:
    client = await app_factory(questions_file=write_bank(tmp_path))
    made = await client.post(
        "/api/customers", json={"customer_number": "C1", "phones": ["+12125550100"]}
    )
    customer = (await made.json())["id"]
    resp = await client.post(
        f"/api/customers/{customer}/answers",
        json={"question_key": "cards_elsewhere", "value": "yes"},
    )
    assert resp.status == 201
    changed = BANK.replace(
        "kind: yes_no\n    priority: 10", "kind: choice\n    choices: [a, b]\n    priority: 10"
    )
    errors = await _refused(pool, write_bank(tmp_path, changed, "kinds.yaml"))
    assert errors[0] == (
        f"{tmp_path / 'kinds.yaml'}:4: question 'cards_elsewhere': kind: the question has "
        "yes_no answers; changing its kind would leave them unreadable: deactivate it and add "
        "a new question instead"
    )
    # and what the new kind would break elsewhere
    assert [e.split(": ")[0].rsplit(":", 1)[1] for e in errors[1:]] == ["13", "27"]


MANY_PROBLEMS = """\
questions:
  - key: broken
    text: A question of no known kind
    kind: integer
  - key: yn
    text: Yes or no?
    kind: yes_no
  - key: yn
    text: The same key again
    kind: yes_no
  - key: reads_ghost
    text: Asked after a question nobody has
    kind: text
    condition: {answered: ghost}
  - key: loop_a
    text: Waits on loop_b
    kind: yes_no
    condition: {answered: loop_b}
  - key: loop_b
    text: Waits on loop_a
    kind: yes_no
    condition: {answered: loop_a}
treatments:
  - key: maybe_offer
    title: Compares with an answer a yes/no question never has
    kind: offer
    condition: {answer: yn, eq: maybe}
    reason: r
  - key: diamond_only
    title: Names a tier that does not exist
    kind: tone
    condition: {tier: [diamond]}
    reason: r
  - key: after_broken
    title: Reads the broken question, which is reported once, on its own line
    kind: offer
    condition: {answered: broken}
    reason: r
"""


async def test_cli_reports_every_kind_of_problem_in_one_run(
    db_url: str, pool: Pool, tmp_path: Path
) -> None:
    # The entries' own problems (a bad kind, a key defined twice) and the whole
    # bank's (an unknown question, a cycle, an impossible answer, an unknown
    # tier) come back together: fixing a file must not take several rounds.
    bad = write_bank(tmp_path, MANY_PROBLEMS, "many.yaml")
    failed = await asyncio.to_thread(_cli, db_url, "assist", "load", bad)
    assert failed.returncode == 2, failed.stdout + failed.stderr
    assert failed.stdout.splitlines() == [
        f"{bad}:4: question 'broken': kind: Input should be 'choice', 'yes_no', 'number' or 'text'",
        f"{bad}:8: question 'yn' is defined twice (first on line 5)",
        f"{bad}:14: question 'reads_ghost': condition.answered: the condition reads question "
        "'ghost', which is not in the bank",
        f"{bad}:18: question 'loop_a': condition: questions depend on each other's answers in a "
        "cycle (loop_a -> loop_b -> loop_a): none of them could ever be asked",
        f"{bad}:27: treatment 'maybe_offer': condition.eq: question 'yn' can never be answered "
        "'maybe': question 'yn' is answered yes or no (or true/false), not the text 'maybe'",
        f"{bad}:32: treatment 'diamond_only': condition.tier: unknown tier 'diamond' in the "
        "condition; known tiers: platinum, gold, silver, standard",
    ]
    assert "6 problem(s); nothing was loaded" in failed.stderr
    assert await bank_rows(pool) == []
