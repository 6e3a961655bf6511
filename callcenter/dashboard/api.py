"""The dashboard's REST side: the figures for scripts, and the supervisor's actions
that the queue did not have yet (move a call, force an agent offline).

Every action's actor is the signed-in principal (``audit.of_request``), never a
name the client sends, and every action leaves an entry in the action log
(``queue/actions.py``) written with the change.
"""

from __future__ import annotations

from aiohttp import web

from callcenter import app_keys
from callcenter.customers import audit
from callcenter.dashboard import timeline
from callcenter.dashboard.models import Stats
from callcenter.dashboard.timeline import Timeline
from callcenter.http.routing import Routes, path_id
from callcenter.queue import actions, agents
from callcenter.queue.actions import ActionPage, ActionQuery
from callcenter.queue.models import Agent, Call, MoveIn

routes = Routes("dashboard")


@routes.route(
    "GET",
    "/api/stats",
    summary="Per queue and tier, over the rolling window and since local midnight: waiting, "
    "service level, speed of answer, abandons, value at risk, learning answers",
    response=Stats,
    access="supervisor",
)
async def get_stats(request: web.Request) -> Stats:
    board = await request.app[app_keys.DASHBOARD].current()
    return board.stats


@routes.route(
    "POST",
    "/api/calls/{call_id}/move",
    summary="Move a waiting call to another queue; it keeps its service key (its place in time)",
    body=MoveIn,
    response=Call,
    errors=[409],
    access="supervisor",
)
async def move_call(request: web.Request, body: MoveIn) -> Call:
    desk = request.app[app_keys.DESK]
    call_id = path_id(request, "call_id")
    return await desk.move(call_id, body.queue, audit.of_request(request, "move_call"))


@routes.route(
    "POST",
    "/api/agents/{agent_id}/offline",
    summary="Take an agent out of routing now (not while on a call); its open offer goes back",
    response=Agent,
    errors=[409],
    access="supervisor",
)
async def force_offline(request: web.Request) -> Agent:
    agent_id = path_id(request, "agent_id")
    actor = audit.of_request(request, "force_offline")
    await request.app[app_keys.ROUTER].force_offline(agent_id, actor)
    async with app_keys.pool(request.app).acquire() as conn:
        return await agents.get_agent(conn, agent_id)


@routes.route(
    "GET",
    "/api/calls/{call_id}/timeline",
    summary="A call's events in order: arrival, offers and their ends, bumps, moves and pins "
    "with who did them, the end (and by whom), wrap-up",
    response=Timeline,
    access="supervisor",
)
async def call_timeline(request: web.Request) -> Timeline:
    call_id = path_id(request, "call_id")
    async with app_keys.pool(request.app).acquire() as conn:
        return await timeline.read(conn, request.app[app_keys.DESK], call_id)


@routes.route(
    "GET",
    "/api/actions",
    summary="What supervisors and admins did to calls, agents and queues (bumps, moves, ends, "
    "forced offline, queue changes), newest first, paged",
    query=ActionQuery,
    response=ActionPage,
)
async def read_actions(request: web.Request, query: ActionQuery) -> ActionPage:
    async with app_keys.pool(request.app).acquire() as conn:
        return await actions.page(conn, query)
