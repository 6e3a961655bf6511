"""The aiohttp application factory: wires the rooms together, holds no globals.

``create_app(settings)`` opens what it needs in ``cleanup_ctx`` and closes it
on shutdown. A test or a second process may pass its own ``pool``; the app
then leaves the pool alone (whoever opens a resource closes it).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

import callcenter
from callcenter import app_keys
from callcenter.agent_assist.desk.hub import AgentHub, SocketLimits
from callcenter.agent_assist.desk.wrap_up import WrapUpDesk
from callcenter.agent_assist.knowledge import api as assist_api
from callcenter.agent_assist.knowledge.bank import load_bank, read_bank
from callcenter.agent_assist.knowledge.panel import PanelBuilder
from callcenter.agent_assist.knowledge.store import BankCache
from callcenter.config import Settings
from callcenter.customers import api as customers_api
from callcenter.customers import privacy, privacy_api
from callcenter.customers.store import CustomerRules
from callcenter.customers.value import ordered_tiers
from callcenter.dashboard import api as dashboard_api
from callcenter.dashboard.hub import DashboardHub
from callcenter.dashboard.metrics import DashboardMetrics
from callcenter.dashboard.stats import DashboardStats
from callcenter.db.lifecycle import database_url, run_migrations
from callcenter.db.migrate import current_version, latest_version
from callcenter.db.pool import create_pool
from callcenter.errors import BankFileError
from callcenter.events import EventBus
from callcenter.http.auth import Gate, Principal, Resolver, bearer_token, host_guard
from callcenter.http.problems import problem, problem_middleware
from callcenter.http.routing import Routes, docs_page, install, openapi_document
from callcenter.people import api as people_api
from callcenter.people import store as people_store
from callcenter.queue import agents as queue_agents
from callcenter.queue import api as queue_api
from callcenter.queue.calls import CallDesk
from callcenter.queue.directory import QueueDirectory
from callcenter.queue.metrics import QueueMetrics
from callcenter.queue.router import Router
from callcenter.runtime import TRANSIENT_DB_ERRORS, Supervisor
from callcenter.telephony_adapters import generic, twilio
from callcenter.telephony_adapters.ari import AriAdapter, AriConfig, AriMetrics
from callcenter.telephony_adapters.bridger import Bridger, bridges_counter
from callcenter.telephony_adapters.gateway import TelephonyGateway, telephony_events_counter
from callcenter.telephony_adapters.releaser import Releaser, releases_counter
from callcenter.web import agent_page, dashboard_page

_log = logging.getLogger(__name__)
system = Routes("system")

METRICS = web.AppKey("metrics", CollectorRegistry)
DASHBOARD_METRICS = web.AppKey("dashboard_metrics", DashboardMetrics)

# No ``_created`` twin beside every counter and histogram: Prometheus has no use
# for it and it doubles the series a scrape carries.
disable_created_metrics()  # type: ignore[no-untyped-call]
REQUESTS = web.AppKey("http_requests", Counter)
LATENCY = web.AppKey("http_latency", Histogram)


@system.route("GET", "/healthz", summary="The process is alive", access="public")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@system.route(
    "GET",
    "/readyz",
    summary="Ready: the database answers and its migrations are current",
    errors=[503],
    access="public",
)
async def readyz(request: web.Request) -> web.Response:
    try:
        async with app_keys.pool(request.app).acquire(timeout=2) as conn:
            version = await current_version(conn)
    except TRANSIENT_DB_ERRORS as exc:
        return problem(503, "Not ready", f"the database does not answer: {type(exc).__name__}")
    expected = latest_version()
    if version != expected:
        return problem(
            503, "Not ready", f"the database is at migration {version}, the code expects {expected}"
        )
    for service in request.app[app_keys.SERVICES]:
        failure = service.failure
        if failure is not None:
            return problem(503, "Not ready", f"the {service.service} stopped: {failure}")
    return web.json_response({"status": "ready", "migration": version})


@web.middleware
async def _measure(request: web.Request, handler: Any) -> web.StreamResponse:
    started = time.perf_counter()
    response: web.StreamResponse = await handler(request)
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    request.app[REQUESTS].labels(request.method, route, str(response.status)).inc()
    request.app[LATENCY].labels(request.method, route).observe(time.perf_counter() - started)
    return response


def create_app(settings: Settings, *, pool: asyncpg.Pool[Any] | None = None) -> web.Application:
    """The whole service as one aiohttp application."""
    middlewares: list[Middleware] = [
        _measure,
        problem_middleware(max_body_bytes=settings.max_body_bytes),
        host_guard(allowed_hosts(settings)),
    ]
    if settings.insecure_open_api:
        _log.warning(
            "CALLCENTER_INSECURE_OPEN_API is on: anyone who reaches %s:%s can read and change "
            "every customer without a token. Never run it so with real customer data.",
            settings.host,
            settings.port,
        )
    app = web.Application(middlewares=middlewares, client_max_size=settings.max_body_bytes)
    app[app_keys.SETTINGS] = settings
    app[app_keys.CUSTOMER_RULES] = CustomerRules.from_settings(settings)
    # Every supervised service registers here while it runs; /readyz asks each.
    app[app_keys.SERVICES] = []
    app[app_keys.GATE] = Gate(
        _resolver(app),
        bootstrap_token=settings.api_token,
        open_api=settings.insecure_open_api,
        failures_per_minute=settings.auth_failures_per_minute,
    )
    registry = CollectorRegistry()
    app[METRICS] = registry
    app[REQUESTS] = Counter(
        "callcenter_http_requests",
        "HTTP requests answered",
        ["method", "route", "status"],
        registry=registry,
    )
    app[LATENCY] = Histogram(
        "callcenter_http_request_seconds",
        "HTTP answer time",
        ["method", "route"],
        registry=registry,
    )

    if pool is not None:
        if settings.database_url is None:
            raise ValueError("an injected pool needs settings.database_url for the event bus")
        app[app_keys.POOL] = pool
        app[app_keys.DSN] = settings.database_url.get_secret_value()
    else:
        app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_assist_bank)
    app.cleanup_ctx.append(_bus_bank_router_and_hub)
    app.cleanup_ctx.append(_telephony_room)
    app.cleanup_ctx.append(_ari_adapter)
    app.cleanup_ctx.append(_retention)
    app.on_shutdown.append(_close_agent_panels)

    endpoints = install(
        app,
        [
            system,
            customers_api.routes,
            privacy_api.routes,
            people_api.routes,
            queue_api.routes,
            assist_api.routes,
            generic.routes,
            twilio.routes,
            agent_page.routes,
            dashboard_api.routes,
        ],
    )
    document = openapi_document(endpoints, title="callcenter", version=callcenter.__version__)
    app[app_keys.OPENAPI] = document
    app.router.add_get("/openapi.json", _openapi)
    app.router.add_get("/docs", _docs)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/ws/agent", _agent_socket)
    app.router.add_get("/ws/dashboard", _dashboard_socket)
    agent_page.add_page(app)
    dashboard_page.add_page(app)
    return app


def allowed_hosts(settings: Settings) -> set[str]:
    """The names a request's ``Host`` may give: this machine's, the bound and public ones."""
    names = {"localhost", "127.0.0.1", "::1", *settings.allowed_hosts}
    if settings.host not in ("0.0.0.0", "::", ""):
        names.add(settings.host)
    if settings.public_url:
        names.add(urlsplit(settings.public_url).hostname or "")
    return names


def _resolver(app: web.Application) -> Resolver:
    """Tokens of people's sessions, integrations and agents, looked up in that order.

    A door that takes agents only (the agent's socket and page) looks among the
    agents alone: a person's token would be refused there anyway, and the
    socket opens one round trip sooner. ``present``: an agent's socket opens
    with the token, and the look-up marks the agent seen (one more round trip
    saved); people have no presence.
    """

    async def resolve(token: str, kind: str | None, present: bool) -> Principal | None:
        async with app_keys.pool(app).acquire() as conn:
            if kind != "agent":
                found = await people_store.principal_for_token(conn, token)
                if found is not None or kind is not None:
                    return found
            return await queue_agents.principal_for_token(conn, token, seen=present)

    return resolve


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[app_keys.SETTINGS]
    async with database_url(settings) as dsn:
        if settings.migrate_on_start:
            await run_migrations(dsn)
        pool = await create_pool(
            dsn, min_size=settings.pool_min_size, max_size=settings.pool_max_size
        )
        app[app_keys.POOL] = pool
        app[app_keys.DSN] = dsn
        try:
            yield
        finally:
            await pool.close()


async def _close_agent_panels(app: web.Application) -> None:
    """On stop, before the server waits for open requests: the agents' sockets would keep
    it waiting (and the panels saying "Connected") until they timed out. The hub tells
    each to reconnect elsewhere, once its in-flight message is answered."""
    hub = app.get(app_keys.HUB)
    if hub is not None:
        await hub.shutdown()


async def _bus_bank_router_and_hub(app: web.Application) -> AsyncIterator[None]:
    """The event bus, the bank cache, the router and the agent hub, started and stopped together."""
    settings = app[app_keys.SETTINGS]
    rules = app[app_keys.CUSTOMER_RULES]
    pool = app_keys.pool(app)
    bus = EventBus(app[app_keys.DSN])
    queue_metrics = QueueMetrics.register(app[METRICS])
    desk = CallDesk(
        pool,
        bus,
        QueueDirectory(ordered_tiers(rules.thresholds)),
        rules,
        settings.stats_window_seconds,
        queue_metrics,
    )
    app[DASHBOARD_METRICS] = DashboardMetrics.register(app[METRICS], queue_metrics.waiting)
    # Offers, presence and the clocks' changes: commits that need not wait for the disk.
    soft_pool = await create_pool(app[app_keys.DSN], min_size=1, max_size=4, durable=False)
    try:
        router = Router(
            desk,
            sweep_seconds=settings.sweep_seconds,
            agent_grace_seconds=settings.agent_grace_seconds,
            soft_pool=soft_pool,
        )
        # The bank in memory, for panels and wrap-ups; reloaded when any instance changes it.
        bank = BankCache(pool)
        panels = PanelBuilder(bank, currency=settings.currency)
        hub = AgentHub(
            router,
            desk,
            panels,
            WrapUpDesk(desk, panels.bank, pool=pool),
            pool=pool,
            soft_pool=soft_pool,
            bus=bus,
            heartbeat_seconds=settings.agent_heartbeat_seconds,
            grace_seconds=settings.agent_grace_seconds,
            allowed_origins=settings.allowed_origins,
            gate=app[app_keys.GATE],
            limits=SocketLimits(
                max_message_bytes=settings.agent_max_message_bytes,
                messages_per_second=settings.agent_messages_per_second,
                max_sockets=settings.agent_max_sockets,
            ),
            panel_seconds=Histogram(
                "callcenter_panel_build_seconds",
                "Assembling an agent's assist panel",
                registry=app[METRICS],
            ),
        )
        dashboard = DashboardHub(
            DashboardStats(desk, settings.stats_window_seconds),
            pool=pool,
            bus=bus,
            gate=app[app_keys.GATE],
            allowed_origins=settings.allowed_origins,
        )
        async with (
            bus.running(),
            bank.running(bus),
            router.running(),
            hub.running(),
            dashboard.running(),
        ):
            app[app_keys.BANK_CACHE] = bank
            app[app_keys.DASHBOARD] = dashboard
            app[app_keys.BUS] = bus
            app[app_keys.DESK] = desk
            app[app_keys.ROUTER] = router
            app[app_keys.HUB] = hub
            with _registered(
                app, bus.supervisor, router.supervisor, hub.supervisor, dashboard.supervisor
            ):
                yield
    finally:
        await soft_pool.close()


@contextlib.contextmanager
def _registered(app: web.Application, *supervisors: Supervisor) -> Iterator[None]:
    """``supervisors`` are asked by ``/readyz`` while the block runs."""
    services = app[app_keys.SERVICES]
    services.extend(supervisors)
    try:
        yield
    finally:
        for supervisor in supervisors:
            services.remove(supervisor)


async def _telephony_room(app: web.Application) -> AsyncIterator[None]:
    """The gateway every adapter hands its events to, the bridger that connects calls,
    and the releaser that hangs up callers whose call ended on our side.

    Adapters that command their peer register a connector with the gateway;
    the HTTP client they share is closed last, after the bridger stopped.
    """
    settings = app[app_keys.SETTINGS]
    desk = app[app_keys.DESK]
    registry = app[METRICS]
    session = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=settings.connect_timeout_seconds)
    )
    try:
        gateway = TelephonyGateway(
            desk,
            default_queue=settings.telephony_default_queue,
            events=telephony_events_counter(registry),
            refused_prefixes=settings.callback_refused_prefixes,
        )
        if settings.generic_callback_url and settings.generic_webhook_secret is not None:
            gateway.register(
                generic.GenericConnector(
                    session,
                    settings.generic_callback_url,
                    settings.generic_webhook_secret.get_secret_value().encode(),
                )
            )
        if settings.twilio_account_sid and settings.twilio_auth_token is not None:
            gateway.register(
                twilio.TwilioConnector(
                    session,
                    api_base=settings.twilio_api_base,
                    account_sid=settings.twilio_account_sid,
                    auth_token=settings.twilio_auth_token.get_secret_value(),
                    public_url=settings.public_url,
                    callback_from=settings.twilio_callback_from,
                    machine_detection=settings.twilio_callback_machine_detection,
                )
            )
        bridger = Bridger(
            desk,
            gateway,
            attempts=settings.connect_attempts,
            backoff_seconds=settings.connect_backoff_seconds,
            timeout_seconds=settings.connect_timeout_seconds,
            # An agent leg rings this long (the ARI adapter's phones); no other peer rings here.
            ring_seconds=settings.ari_ring_seconds if settings.ari_url else 0.0,
            max_requeues=settings.connect_max_requeues,
            catch_up_seconds=settings.sweep_seconds * 5,
            results=bridges_counter(registry),
            callback_ring_seconds=settings.callback_ring_seconds,
        )
        releaser = Releaser(
            desk,
            gateway,
            attempts=settings.release_attempts,
            backoff_seconds=settings.release_backoff_seconds,
            timeout_seconds=settings.connect_timeout_seconds,
            catch_up_seconds=settings.sweep_seconds * 5,
            results=releases_counter(registry),
        )
        app[app_keys.HTTP_CLIENT] = session
        app[app_keys.GATEWAY] = gateway
        app[app_keys.BRIDGER] = bridger
        app[app_keys.RELEASER] = releaser
        async with bridger.running(), releaser.running():
            with _registered(app, bridger.supervisor, releaser.supervisor):
                yield
    finally:
        await session.close()


async def _ari_adapter(app: web.Application) -> AsyncIterator[None]:
    """The Asterisk ARI client, when ``CALLCENTER_ARI_URL`` is set; watched by ``/readyz``."""
    config = AriConfig.from_settings(app[app_keys.SETTINGS])
    if config is None:
        yield
        return
    adapter = AriAdapter(
        config, app[app_keys.GATEWAY], app[app_keys.HTTP_CLIENT], metrics=AriMetrics(app[METRICS])
    )
    async with adapter.running():
        app[app_keys.ARI] = adapter
        with _registered(app, adapter.supervisor):
            yield


async def _retention(app: web.Application) -> AsyncIterator[None]:
    """The daily job that clears notes and text answers older than the retention period."""
    settings = app[app_keys.SETTINGS]
    async with privacy.retention_schedule(
        app_keys.pool(app), days=settings.retention_days, hour=settings.retention_hour
    ) as scheduler:
        app[app_keys.RETENTION_SCHEDULER] = scheduler
        yield


async def _assist_bank(app: web.Application) -> AsyncIterator[None]:
    """Load the bank file before anything serves: a bad file stops the start (file:line)."""
    settings = app[app_keys.SETTINGS]
    if settings.questions_file is not None:
        await _load_bank(app, settings.questions_file)
    yield


async def _load_bank(app: web.Application, path: Path) -> None:
    # Errors in the file stop the start, whatever the database: all of them at once,
    # so the entries' own problems wait for the checks against the stored bank.
    bank_file = read_bank(path, keep_problems=True)
    tiers = ordered_tiers(app[app_keys.CUSTOMER_RULES].thresholds)
    async with app_keys.pool(app).acquire() as conn:
        version = await current_version(conn)
        if version != latest_version():
            if bank_file.problems:
                raise BankFileError(
                    [f"{bank_file.name}:{line}: {what}" for line, what in bank_file.problems]
                )
            # Not ready (/readyz says so) until migrated, and the bank needs the tables.
            _log.warning(
                "the database is at migration %s, not %s: the question bank is loaded "
                "when the service starts on a migrated database",
                version,
                latest_version(),
            )
            return
        change = await load_bank(conn, bank_file, tiers=tiers)
    _log.info(
        "question bank %s: %d created, %d updated, %d unchanged, %d deactivated",
        path,
        len(change.created),
        len(change.updated),
        len(change.unchanged),
        len(change.deactivated),
    )


async def _agent_socket(request: web.Request) -> web.StreamResponse:
    return await request.app[app_keys.HUB].handle(request)


async def _dashboard_socket(request: web.Request) -> web.StreamResponse:
    return await request.app[app_keys.DASHBOARD].handle(request)


async def _openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[app_keys.OPENAPI])


async def _docs(request: web.Request) -> web.Response:
    return web.Response(
        text=docs_page(request.app[app_keys.OPENAPI]),
        content_type="text/html",
        # The page is static HTML with one inline style sheet: nothing else may run or load.
        headers={
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            "X-Content-Type-Options": "nosniff",
        },
    )


async def _metrics(request: web.Request) -> web.Response:
    expected = request.app[app_keys.SETTINGS].metrics_token
    if expected is not None:
        given = bearer_token(request) or ""
        if not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
            raise request.app[app_keys.GATE].wrong_token(
                request, "/metrics needs the scrape token: Authorization: Bearer <token>"
            )
    desk = request.app.get(app_keys.DESK)
    if desk is not None:
        # Counted when asked (a scrape every 15-60 s), not on the router's clock:
        # the count reads every waiting call, and with 100,000 of them that is
        # tens of milliseconds a routing sweep has no business spending.
        try:
            dashboard = request.app.get(app_keys.DASHBOARD)
            if dashboard is not None:
                request.app[DASHBOARD_METRICS].update(await dashboard.current())
            else:
                await desk.refresh_waiting_gauge()
        except TRANSIENT_DB_ERRORS as exc:
            _log.warning("/metrics: waiting calls not counted (%s); the last count stands", exc)
    body = generate_latest(request.app[METRICS])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
