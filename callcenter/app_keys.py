"""Typed keys of everything the application holds; one place, so no module state.

The keys carry their types as annotations only: the rooms are imported under
``TYPE_CHECKING``, so importing this module (which every ``api.py`` does)
loads no room at run time, and no lower layer ends up importing a higher one
through it. ``tests/unit/test_layering.py`` holds that line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    import aiohttp
    import asyncpg

    from callcenter.agent_assist.desk.hub import AgentHub
    from callcenter.agent_assist.knowledge.store import BankCache
    from callcenter.config import Settings
    from callcenter.customers.store import CustomerRules
    from callcenter.dashboard.hub import DashboardHub
    from callcenter.events import EventBus
    from callcenter.http.auth import Gate
    from callcenter.queue.calls import CallDesk
    from callcenter.queue.router import Router
    from callcenter.runtime import Supervisor
    from callcenter.telephony_adapters.ari import AriAdapter
    from callcenter.telephony_adapters.bridger import Bridger
    from callcenter.telephony_adapters.gateway import TelephonyGateway
    from callcenter.telephony_adapters.releaser import Releaser

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
POOL: web.AppKey[asyncpg.Pool[Any]] = web.AppKey("pool")
CUSTOMER_RULES: web.AppKey[CustomerRules] = web.AppKey("customer_rules")
OPENAPI: web.AppKey[dict[str, Any]] = web.AppKey("openapi")
DSN: web.AppKey[str] = web.AppKey("dsn")
BUS: web.AppKey[EventBus] = web.AppKey("event_bus")
DESK: web.AppKey[CallDesk] = web.AppKey("call_desk")
ROUTER: web.AppKey[Router] = web.AppKey("router")
HUB: web.AppKey[AgentHub] = web.AppKey("agent_hub")
GATEWAY: web.AppKey[TelephonyGateway] = web.AppKey("telephony_gateway")
BRIDGER: web.AppKey[Bridger] = web.AppKey("bridger")
#: Hangs up, at the peer, callers whose call ended on our side.
RELEASER: web.AppKey[Releaser] = web.AppKey("releaser")
#: One HTTP client for every outbound command to a telephony peer.
HTTP_CLIENT: web.AppKey[aiohttp.ClientSession] = web.AppKey("http_client")
#: The Asterisk ARI adapter, present only when ``CALLCENTER_ARI_URL`` is set.
ARI: web.AppKey[AriAdapter] = web.AppKey("ari_adapter")
#: Who is asking, and may they (every route passes it).
GATE: web.AppKey[Gate] = web.AppKey("gate")

#: The supervisors' dashboards: the stream hub, and the figures it reads once for all.
DASHBOARD: web.AppKey[DashboardHub] = web.AppKey("dashboard_hub")
BANK_CACHE: web.AppKey[BankCache] = web.AppKey("assist_bank_cache")
#: The daily retention job's scheduler (apscheduler's AsyncIOScheduler, untyped).
RETENTION_SCHEDULER: web.AppKey[Any] = web.AppKey("retention_scheduler")
#: The supervised services running now; ``/readyz`` reports any task of theirs that is down.
SERVICES: web.AppKey[list[Supervisor]] = web.AppKey("supervised_services")


def pool(app: web.Application) -> asyncpg.Pool[Any]:
    """The database pool (kept as a function: the rooms' handlers call it)."""
    return app[POOL]
