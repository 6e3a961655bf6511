"""The assist panel: what the agent holding a call sees about its caller.

Assembly is one statement for the customer's side (customer, phones, latest
answers, the first history page, see ``panel.sql``) plus pure functions over
the question bank and treatment rules, which are held in memory and reloaded
when the bank changes. So the cost of a panel does not grow with the length
of the history or the size of the bank, and it is never N+1.

The bank comes from ``store.BankCache`` (reloaded when any instance changes it).
The question shown on a call is chosen once, the first time its panel is
built, and kept on the call: a panel that reconnects shows the same question,
and the wrap-up is checked against the question the agent actually asked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from callcenter.agent_assist.knowledge.conditions import Facts, Words
from callcenter.agent_assist.knowledge.questions import (
    StoredAnswer,
    current_answers,
    pending_question,
)
from callcenter.agent_assist.knowledge.store import Bank, BankCache
from callcenter.agent_assist.knowledge.treatments import matching
from callcenter.agent_assist.protocol import (
    AttemptsSince,
    CallerCandidate,
    HistoryAnswer,
    HistoryItem,
    HistoryMessage,
    Need,
    PanelCustomer,
    PanelMessage,
    PanelQuestion,
    PanelTreatment,
    Recognised,
    RecognisedBy,
)
from callcenter.db.pool import Conn
from callcenter.db.sql import load_queries

P = load_queries("callcenter.agent_assist.knowledge", "panel.sql")

#: Contacts per history page: enough to pick up the thread, small enough to send at once.
HISTORY_PAGE = 20


def recognised(
    by: str | None,
    ani: str | None,
    customer_number: str | None,
    *,
    link_phone: str | None = None,
    verified_by: str | None = None,
    verified_at: datetime | None = None,
) -> Recognised:
    """How the caller was recognised, with the sentence the agent reads first.

    A typed number is a claim, not proof: for ``pending`` and ``conflict`` the
    sentence says the call is served as that customer for this call only, so
    the agent confirms who is calling before discussing the account.
    """
    phone = ani or "a withheld number"
    number = customer_number or "their customer number"
    confirmed = f"{verified_by} confirmed who is calling" if verified_by else None
    details = {
        "phone": f"recognised by the calling number {phone}",
        "customer_number": f"identified by the typed customer number {number}",
        "pending": (
            f"served as {number} for this call only: the number was typed from {phone}, "
            "which is not on their record; the phone is not linked until you confirm who "
            "is calling"
            if confirmed is None
            else f"typed {number} from {phone}; {confirmed}, but the phone belongs to "
            "someone else by now, so it was not linked"
        ),
        "linked": f"typed {number} from {phone}; "
        + (
            f"{confirmed}, and the phone is now linked to them"
            if confirmed
            else "that phone is now linked to them"
        ),
        "conflict": (
            f"typed {number}, but {phone} belongs to someone else: served as {number} for "
            "this call only, nothing re-linked; confirm who is calling before you discuss "
            "the account (the conflict is recorded for review)"
        ),
        "multiple": f"{phone} is shared by several customers: ask who is calling",
        "agent": f"{verified_by or 'the agent'} picked them as the caller"
        + (f"; {link_phone} is now linked to them" if link_phone else ""),
        "unknown": f"first call from {phone}: a provisional customer was created",
        "withheld": "the number was withheld and no customer number was typed",
    }
    key = by if by in details else "withheld" if ani is None else "unknown"
    detail = details[key]
    if confirmed is not None and key not in ("pending", "linked", "agent"):
        detail = f"{detail}; {confirmed}"
    return Recognised(
        by=cast(RecognisedBy, key),  # one of the keys above, each a RecognisedBy
        detail=detail,
        pending_link=link_phone if key == "pending" and verified_by is None else None,
        verified_by=verified_by,
        verified_at=verified_at,
    )


def recognised_of(row: Mapping[str, Any]) -> Recognised:
    """``recognised`` from a call's columns (``panel`` and ``call_recognised``)."""
    return recognised(
        row["identified_by"],
        row["ani"],
        row["customer_number"],
        link_phone=row["link_phone"],
        verified_by=row["verified_by"],
        verified_at=row["verified_at"],
    )


def _text(bank: Bank, key: str) -> str:
    question = bank.question(key)
    return question.text if question is not None else key


def answers_of(rows: Sequence[Mapping[str, Any]]) -> dict[str, StoredAnswer]:
    """The latest answer per question, from the panel statement's ``latest_answers``."""
    return {
        r["question_key"]: StoredAnswer(
            value=r["value"],
            skipped=r["skipped"],
            answered_at=datetime.fromisoformat(r["answered_at"]),
        )
        for r in rows
    }


def history_items(rows: Sequence[Mapping[str, Any]], bank: Bank) -> list[HistoryItem]:
    items = []
    for r in rows:
        answer = None
        if r["question_key"] is not None:
            answer = HistoryAnswer(
                question_key=r["question_key"],
                question=_text(bank, r["question_key"]),
                value=r["value"],
                skipped=r["skipped"],
            )
        items.append(
            HistoryItem(
                interaction_id=r["id"],
                call_id=r["call_id"],
                started_at=r["started_at"],
                ended_at=r["ended_at"],
                channel=r["channel"],
                agent=r["agent"],
                outcome=r["outcome"],
                notes=r["notes"],
                answer=answer,
                waited_seconds=r.get("waited_seconds"),
            )
        )
    return items


def _page(call_id: int, rows: Sequence[Mapping[str, Any]], bank: Bank, size: int) -> HistoryMessage:
    items = history_items(rows[:size], bank)
    more = len(rows) > size
    return HistoryMessage(
        call_id=call_id, items=items, next_before=items[-1].interaction_id if more else None
    )


class PanelBuilder:
    def __init__(
        self, bank: BankCache, *, page_size: int = HISTORY_PAGE, currency: str = "USD"
    ) -> None:
        self.bank = bank
        self.page_size = page_size
        #: The amounts' currency, shown with each (the panel's figures and "because" chips).
        self.currency = currency

    async def build(
        self,
        conn: Conn,
        call_id: int,
        now: datetime,
        *,
        who: str | None = None,
        remote: str | None = None,
    ) -> PanelMessage | None:
        """The panel for ``call_id``; the caller of this checks the agent holds the call.

        A panel is a read of the customer's record: given the reader ``who``
        (``agent:<name>``) and its socket's address ``remote``, the statement
        that reads it also writes the audit entry.
        """
        row = await conn.fetchrow(P["panel"], call_id, *self.read_arguments(who, remote))
        if row is None:
            return None
        return await self.of_row(conn, row, now)

    def read_arguments(
        self, who: str | None, remote: str | None
    ) -> tuple[int, str | None, str | None]:
        """The arguments of the panel's read after the call's id (the SQL function
        ``assist_panel``'s), for a statement that reads it with something else (the
        agent desk's accept): the history's first page and one row more (to know
        whether there is a next page), and who reads it from where."""
        return self.page_size + 1, who, remote

    async def of_row(self, conn: Conn, row: Mapping[str, Any], now: datetime) -> PanelMessage:
        """The panel from its read's row (``panel``'s columns, however it was read).

        The call's question is chosen here the first time (``set_question``, the one
        write: the stored choice wins when two instances choose).
        """
        bank = await self.bank.get(conn)
        call_id: int = row["call_id"]
        customer = None
        needs: list[Need] = []
        question: PanelQuestion | None = None
        treatments: list[PanelTreatment] = []
        if row["customer_id"] is not None:
            customer = PanelCustomer(
                id=row["customer_id"],
                customer_number=row["customer_number"],
                name=row["name"],
                tier=row["tier"],
                tier_pinned=row["tier_pinned"],
                provisional=row["provisional"],
                lifetime_value=row["lifetime_value"],
                annual_margin=row["annual_margin"],
                cost_to_serve=row["cost_to_serve"],
                net_value=row["lifetime_value"] - row["cost_to_serve"],
                currency=self.currency,
                phones=list(row["phones"]),
            )
            latest = answers_of(row["latest_answers"])
            current = current_answers(bank.questions, latest, now)
            needs = [
                Need(
                    key=k,
                    question=_text(bank, k),
                    value=value,
                    answered_at=latest[k].answered_at,
                )
                for k, value in current.items()
            ]
            facts = Facts(
                tier=customer.tier,
                lifetime_value=customer.lifetime_value,
                annual_margin=customer.annual_margin,
                answers=current,
            )
            question = await self._question(
                conn, call_id, row["question_key"], bank, latest, facts, now
            )
            treatments = [
                PanelTreatment(
                    key=m.key,
                    title=m.title,
                    kind=m.kind.value,
                    detail=m.detail,
                    reason=m.reason,
                    because=m.because,
                )
                for m in matching(bank.active_treatments, facts, self._words(bank))
            ]
        return PanelMessage(
            call_id=call_id,
            recognised=recognised_of(row),
            customer=customer,
            needs=needs,
            history=_page(call_id, row["history"], bank, self.page_size),
            question=question,
            treatments=treatments,
            candidates=[CallerCandidate.model_validate(c) for c in row["candidates"]],
            last_contact=(
                history_items([row["last_contact"]], bank)[0] if row["last_contact"] else None
            ),
            attempts_since=(
                AttemptsSince.model_validate(row["attempts_since"])
                if customer is not None
                else None
            ),
        )

    def _words(self, bank: Bank) -> Words:
        """The "because" facts as the agent reads them: questions by text, amounts in currency."""
        return Words(questions={q.key: q.text for q in bank.questions}, currency=self.currency)

    async def _question(
        self,
        conn: Conn,
        call_id: int,
        chosen: str | None,
        bank: Bank,
        latest: Mapping[str, StoredAnswer],
        facts: Facts,
        now: datetime,
    ) -> PanelQuestion | None:
        if chosen is None:
            pending = pending_question(bank.questions, latest, now, profile=facts)
            if pending is None:
                return None
            # Another instance may have chosen first: the stored choice wins.
            chosen = await conn.fetchval(P["set_question"], call_id, pending.key)
        q = bank.question(chosen) if chosen is not None else None
        if q is None:
            return None
        return PanelQuestion(
            key=q.key,
            text=q.text,
            kind=q.kind.value,
            choices=list(q.choices),
            min_value=q.min_value,
            max_value=q.max_value,
        )

    async def recognised(self, conn: Conn, call_id: int) -> Recognised | None:
        """How the caller of ``call_id`` stands now (after a ``verify``), without the rest."""
        row = await conn.fetchrow(P["call_recognised"], call_id)
        return None if row is None else recognised_of(row)

    async def history(
        self,
        conn: Conn,
        call_id: int,
        before: int,
        *,
        who: str | None = None,
        remote: str | None = None,
    ) -> HistoryMessage:
        """An older page of the history of ``call_id``'s customer (audited as ``build``)."""
        bank = await self.bank.get(conn)
        rows = await conn.fetch(P["history_page"], call_id, before, self.page_size + 1, who, remote)
        return _page(call_id, [dict(r) for r in rows], bank, self.page_size)
