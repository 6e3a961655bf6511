"""Typed keys of everything the application holds; one place, so no module state."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from callcenter.config import Settings
from callcenter.customers.store import CustomerRules

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
CUSTOMER_RULES = web.AppKey("customer_rules", CustomerRules)
OPENAPI = web.AppKey("openapi", dict)


def pool(app: web.Application) -> asyncpg.Pool[Any]:
    """The database pool, typed (``AppKey`` cannot carry the generic parameter)."""
    return app[POOL]
