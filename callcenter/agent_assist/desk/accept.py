"""The agent's accept, with its caller's panel read in the same round trip (issue 21).

After an accept the hub pushed the agent's new state and then read the call's
assist panel for it: a round trip of its own, right after the accept's. The
panel reads nothing the accept changes, so the accepting socket's panel is
read by the accept's statement itself (``accept.sql``: the queue's accept,
then ``knowledge``'s panel read, audited as that socket's read); the router
runs it as it runs its own accept (``Router.accept``) and hands the row
back. The hub keeps the row on the socket (``Accepted``) and builds the panel
from it when the state that shows the call goes out, so the socket gets ack,
state, panel, in that order, as before. The agent's other panels, reconnects
and repanels read as they always did.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from callcenter.agent_assist.knowledge.panel import PanelBuilder
from callcenter.db.sql import load_queries
from callcenter.queue.router import Router, WithAccept

A = load_queries("callcenter.agent_assist.desk", "accept.sql")


@dataclass(frozen=True)
class Accepted:
    """What an accept read for the socket that sent it: the call it connected, and
    its panel's row as the ``panel`` read answers it (None: not read)."""

    call_id: int
    panel: Mapping[str, Any] | None


def with_panel(panels: PanelBuilder, who: str, remote: str | None) -> WithAccept:
    """The accept's statement with the panel's read of its call, by ``who`` from ``remote``."""
    return WithAccept(A["accept_with_panel"], panels.read_arguments(who, remote))


def accepted_of(row: asyncpg.Record) -> Accepted:
    """The accept's row (``accept_with_panel``'s) as the hub keeps it."""
    call_id: int = row["accepted"]["call_id"]
    # The panel's columns beside the accept's; a call the panel found no row for
    # (it always finds its own call) leaves them null.
    panel = None if row["call_id"] is None else {k: v for k, v in row.items() if k != "accepted"}
    return Accepted(call_id, panel)


async def accept(
    router: Router,
    panels: PanelBuilder,
    agent_id: int,
    offer_id: int,
    *,
    who: str,
    remote: str | None,
) -> Accepted:
    """The agent takes its offer; its caller's panel is read with it, by ``who``."""
    row = await router.accept(agent_id, offer_id, with_panel(panels, who, remote))
    return accepted_of(row)
