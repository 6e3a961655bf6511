"""The dashboard's REST side: the figures for scripts, and the supervisor's actions
that the queue did not have yet (move a call, force an agent offline).

Every action's actor is the signed-in principal (``principal(request).who``),
never a name the client sends.
"""

from __future__ import annotations

from aiohttp import web

from callcenter import app_keys
from callcenter.dashboard.models import Stats
from callcenter.http.auth import principal
from callcenter.http.routing import Routes, path_id
from callcenter.queue import agents
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
    return await desk.move(path_id(request, "call_id"), body.queue, principal(request).who)


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
    await request.app[app_keys.ROUTER].force_offline(agent_id, principal(request).who)
    async with app_keys.pool(request.app).acquire() as conn:
        return await agents.get_agent(conn, agent_id)
