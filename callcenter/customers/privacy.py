"""Customers' data rights: export (GDPR art. 15), erasure (art. 17), retention of free text.

* **Export** gathers everything held about a customer (the record, phones,
  every contact with its notes, calls, answers, identity conflicts and the
  audit entries about them) into one document, so an operator answers a
  subject access request with one call.
* **Erase** removes what identifies the customer and every free text about
  them, in one statement, and keeps what the service levels are computed
  from (waits, outcomes, tiers, the customer id): the history stays true, the
  person is gone. A customer on a live call is refused (409) until it ends,
  so the call in progress is never served with half a record. Erasing again
  is allowed and does what is left to do (usually nothing): a record refilled
  since (a CRM sync) is erased again.
* **Retention** clears call notes and text answers older than
  ``CALLCENTER_RETENTION_DAYS``: run daily by the service and on demand by
  ``callcenter retention run``.

Every action writes its own audit entry; entries keep ids, actions and counts,
never the erased text.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]
from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]
from pydantic import BaseModel, Field

from callcenter.customers import audit as audit_log
from callcenter.customers.audit import Audit, AuditEntry, Channel
from callcenter.customers.models import Customer, IdentityConflict, Interaction
from callcenter.customers.store import get_customer
from callcenter.db.pool import Conn
from callcenter.db.sql import load_queries
from callcenter.errors import Conflict, NotFound
from callcenter.runtime import TRANSIENT_DB_ERRORS

R = load_queries("callcenter.customers", "privacy.sql")
_log = logging.getLogger(__name__)

#: How an erased customer's number begins; the rest is random.
ERASED_PREFIX = "erased-"

#: Who the audit log names for the scheduled job and the operator's command.
RETENTION_JOB = "system:retention"


class ExportCall(BaseModel):
    id: int
    customer_id: int
    queue: str
    ani: str | None = Field(description="The calling number, as the call came in.")
    identified_by: str | None
    tier: str | None
    state: str
    end_reason: str | None
    enqueued_at: datetime
    connected_at: datetime | None
    ended_at: datetime | None
    agent: str | None


class ExportAnswer(BaseModel):
    id: int
    question_key: str
    value: Any
    skipped: bool
    answered_at: datetime
    call_id: int | None
    interaction_id: int | None


class CustomerExport(BaseModel):
    """Everything held about one customer (GDPR art. 15), as of ``exported_at``."""

    exported_at: datetime
    customer: Customer
    merged_customers: list[int] = Field(
        description="Provisional customers (earlier unknown callers) merged into this one; "
        "their calls and history are included."
    )
    history: list[Interaction] = Field(description="Every contact, newest first, with notes.")
    calls: list[ExportCall] = Field(description="Every call, newest first.")
    answers: list[ExportAnswer] = Field(description="Every answer and skip, newest first.")
    identity_conflicts: list[IdentityConflict]
    audit: list[AuditEntry] = Field(description="Who read or changed the record, newest first.")


class Erased(BaseModel):
    """What an erasure removed; all zero when an earlier one had left nothing to do."""

    customer_id: int
    erased_at: datetime
    already_erased: bool = Field(description="The customer had been erased before this request.")
    customer_number: str = Field(description="The anonymous token that replaced the number.")
    phones: int = Field(description="Phone numbers removed.")
    notes: int = Field(description="Contact notes removed.")
    text_answers: int = Field(description="Text answers cleared.")
    calling_numbers: int = Field(description="Calls whose calling number was removed.")
    conflicts: int = Field(description="Identity conflicts whose phone or number was removed.")


class RetentionRun(BaseModel):
    days: int
    notes: int = Field(description="Contact notes cleared.")
    text_answers: int = Field(description="Text answers cleared.")
    customers: int = Field(description="Customers touched (one audit entry each).")


async def export(conn: Conn, customer_id: int, audit: Audit) -> CustomerExport:
    """The whole record of ``customer_id``, read in one snapshot; the export is audited."""
    async with conn.transaction(isolation="repeatable_read"):
        customer = await get_customer(conn, customer_id)
        ids: list[int] = await conn.fetchval(R["export_ids"], customer_id)
        document = CustomerExport(
            exported_at=datetime.now(UTC),
            customer=customer,
            merged_customers=[i for i in ids if i != customer_id],
            history=[Interaction(**dict(r)) for r in await conn.fetch(R["export_history"], ids)],
            calls=[ExportCall(**dict(r)) for r in await conn.fetch(R["export_calls"], ids)],
            answers=[ExportAnswer(**dict(r)) for r in await conn.fetch(R["export_answers"], ids)],
            identity_conflicts=[
                IdentityConflict(**dict(r)) for r in await conn.fetch(R["export_conflicts"], ids)
            ],
            audit=await audit_log.about(conn, customer_id),
        )
        await audit_log.record(conn, audit, [customer_id])
    return document


async def erase(conn: Conn, customer_id: int, audit: Audit) -> Erased:
    """Erase ``customer_id`` (and the provisional customers merged into it); 409 on a live call."""
    async with conn.transaction():
        # The calls first, then the customer: the order the wrap-up locks them in.
        await conn.fetch(R["lock_calls_for_erase"], customer_id)
        row = await conn.fetchrow(R["lock_for_erase"], customer_id)
        if row is None:
            raise NotFound(f"no customer with id {customer_id}")
        if row["live_calls"]:
            calls = ", ".join(str(c) for c in row["live_calls"])
            raise Conflict(
                f"customer {customer_id} is on a live call ({calls}); erase it when the call ends"
            )
        # Erased before: the anonymous token stays, so erasing again changes nothing.
        token = row["customer_number"]
        if row["erased_at"] is None or not str(token).startswith(ERASED_PREFIX):
            token = f"{ERASED_PREFIX}{secrets.token_hex(8)}"
        who, channel, remote, _, _ = audit.params()
        counts = _one(await conn.fetchrow(R["erase"], row["ids"], token, who, channel, remote))
    return Erased(
        customer_id=customer_id,
        erased_at=counts["erased_at"],
        already_erased=row["erased_at"] is not None,
        customer_number=token,
        phones=counts["phones"],
        notes=counts["notes"],
        text_answers=counts["text_answers"],
        calling_numbers=counts["calling_numbers"],
        conflicts=counts["conflicts"],
    )


def _one(row: asyncpg.Record | None) -> asyncpg.Record:
    """The row of a statement that always returns one (an aggregate)."""
    if row is None:
        raise RuntimeError("the statement returned no row")
    return row


async def apply_retention(conn: Conn, days: int, *, channel: Channel = "job") -> RetentionRun:
    """Clear notes and text answers older than ``days`` (one statement; rows kept)."""
    row = _one(await conn.fetchrow(R["retention"], days, RETENTION_JOB, channel))
    return RetentionRun(
        days=days,
        notes=row["notes"],
        text_answers=row["text_answers"],
        customers=row["customers"],
    )


@contextlib.asynccontextmanager
async def retention_schedule(
    pool: asyncpg.Pool[Any], *, days: int, hour: int
) -> AsyncIterator[AsyncIOScheduler]:
    """Run ``apply_retention`` daily at ``hour`` UTC for the life of the block.

    Every instance may run it: the statement is idempotent, so two instances
    clearing the same day's text change nothing twice. A run that fails (the
    database away) is logged; the next day's run clears what it left.
    """

    async def run() -> None:
        try:
            async with pool.acquire() as conn:
                done = await apply_retention(conn, days)
        except TRANSIENT_DB_ERRORS as exc:
            _log.warning("retention: not run (%s); the next run clears what is due", exc)
            return
        _log.info(
            "retention (%d days): %d notes and %d text answers cleared, %d customers",
            done.days,
            done.notes,
            done.text_answers,
            done.customers,
        )

    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.add_job(
        run,
        CronTrigger(hour=hour, minute=0, timezone=UTC),
        id="retention",
        coalesce=True,
        max_instances=1,
        misfire_grace_time=3600,
    )
    scheduler.start()
    try:
        yield scheduler
    finally:
        scheduler.shutdown(wait=False)
