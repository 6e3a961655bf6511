"""Typed keys of everything the application holds; one place, so no module state."""

from __future__ import annotations

from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from callcenter.agent_assist.desk.hub import AgentHub
from callcenter.agent_assist.knowledge.store import BankCache
from callcenter.config import Settings
from callcenter.customers.store import CustomerRules
from callcenter.events import EventBus
from callcenter.queue.calls import CallDesk
from callcenter.queue.router import Router
from callcenter.runtime import Supervisor
from callcenter.telephony_adapters.ari import AriAdapter
from callcenter.telephony_adapters.bridger import Bridger
from callcenter.telephony_adapters.gateway import TelephonyGateway
from callcenter.telephony_adapters.releaser import Releaser

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
CUSTOMER_RULES = web.AppKey("customer_rules", CustomerRules)
OPENAPI = web.AppKey("openapi", dict)
DSN = web.AppKey("dsn", str)
BUS = web.AppKey("event_bus", EventBus)
DESK = web.AppKey("call_desk", CallDesk)
ROUTER = web.AppKey("router", Router)
HUB = web.AppKey("agent_hub", AgentHub)
GATEWAY = web.AppKey("telephony_gateway", TelephonyGateway)
BRIDGER = web.AppKey("bridger", Bridger)
#: Hangs up, at the peer, callers whose call ended on our side.
RELEASER = web.AppKey("releaser", Releaser)
#: One HTTP client for every outbound command to a telephony peer.
HTTP_CLIENT = web.AppKey("http_client", aiohttp.ClientSession)
#: The Asterisk ARI adapter, present only when ``CALLCENTER_ARI_URL`` is set.
ARI = web.AppKey("ari_adapter", AriAdapter)

BANK_CACHE = web.AppKey("assist_bank_cache", BankCache)
#: The supervised services running now; ``/readyz`` reports any task of theirs that is down.
SERVICES: web.AppKey[list[Supervisor]] = web.AppKey("supervised_services")


def pool(app: web.Application) -> asyncpg.Pool[Any]:
    """The database pool, typed (``AppKey`` cannot carry the generic parameter)."""
    return app[POOL]
