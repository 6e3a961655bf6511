"""A small bank for the assist tests, and helpers to load it and read what is stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeAlias

import asyncpg

Pool: TypeAlias = "asyncpg.Pool[Any]"

BANK = """\
questions:
  - key: cards_elsewhere
    text: Do you hold credit cards with another bank?
    kind: yes_no
    priority: 10
    cooldown_days: 14
    fresh_days: 180
  - key: card_count
    text: How many cards do you hold elsewhere?
    kind: number
    min_value: 1
    condition: {answer: cards_elsewhere, eq: yes}
    priority: 11
  - key: contact_channel
    text: How would you prefer us to contact you?
    kind: choice
    choices: [phone, email]
    priority: 20
treatments:
  - key: premium_card
    title: Offer the premium card
    kind: offer
    condition:
      all:
        - {value: {gte: 25000}}
        - {answer: cards_elsewhere, eq: yes}
    reason: High-value customers with cards elsewhere take it up most often.
    priority: 10
  - key: email_follow_up
    title: Confirm follow-ups by email
    kind: channel
    condition: {answer: contact_channel, eq: email}
    reason: The customer prefers email.
    priority: 20
"""


def write_bank(folder: Path, text: str = BANK, name: str = "bank.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


async def bank_rows(pool: Pool) -> list[tuple[Any, ...]]:
    """Everything stored about the bank, to compare before and after a refused change."""
    async with pool.acquire() as conn:
        questions = await conn.fetch("SELECT * FROM questions ORDER BY key")
        treatments = await conn.fetch("SELECT * FROM treatments ORDER BY key")
    return [tuple(r.values()) for r in [*questions, *treatments]]


async def age_answers(pool: Pool, customer_id: int, key: str, days: float) -> None:
    """Move a customer's answers to ``key`` ``days`` into the past (the clock, not a sleep)."""
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE answers SET answered_at = answered_at - make_interval(secs => $3)"
            " WHERE customer_id = $1 AND question_key = $2",
            customer_id,
            key,
            days * 86400,
        )
