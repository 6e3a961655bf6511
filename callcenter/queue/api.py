"""REST endpoints of the hold queue: calls in, queues and agents for supervisors."""

from __future__ import annotations

import re

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from callcenter import app_keys
from callcenter.customers import audit
from callcenter.errors import Unprocessable
from callcenter.events import Event
from callcenter.http.routing import Routes, path_id
from callcenter.queue import actions, agents
from callcenter.queue.models import (
    Agent,
    AgentCreated,
    AgentIn,
    AgentList,
    AgentPatch,
    Call,
    CallIn,
    EndIn,
    EnqueueAnswer,
    IdentifyCallIn,
    PriorityIn,
    Queue,
    QueueCalls,
    QueueConfig,
    QueueList,
    QueuePatch,
)

routes = Routes("queue")

QUEUE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


class CallsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=100, ge=1, le=1000, description="At most this many, head first.")


@routes.route(
    "POST",
    "/api/calls",
    summary="Hand in an incoming call: identify, value and enqueue it (a repeated call id "
    "answers 200 with its current state)",
    body=CallIn,
    response=EnqueueAnswer,
    status=201,
)
async def enqueue_call(request: web.Request, body: CallIn) -> web.Response:
    answer = await request.app[app_keys.DESK].incoming(body)
    return web.json_response(text=answer.model_dump_json(), status=201 if answer.created else 200)


@routes.route(
    "GET",
    "/api/calls/{call_id}",
    summary="One call, with position and EWT",
    response=Call,
    access="supervisor",
)
async def get_call(request: web.Request) -> Call:
    return await request.app[app_keys.DESK].call(path_id(request, "call_id"))


@routes.route(
    "POST",
    "/api/calls/{call_id}/identify",
    summary="The IVR collected a customer number: identify again and reorder by value",
    body=IdentifyCallIn,
    response=Call,
    errors=[409],
    access="supervisor",
)
async def identify_call(request: web.Request, body: IdentifyCallIn) -> Call:
    desk = request.app[app_keys.DESK]
    actor = audit.of_request(request, "identify_call")
    return await desk.identify(path_id(request, "call_id"), body.customer_number, audit=actor)


@routes.route(
    "POST",
    "/api/calls/{call_id}/priority",
    summary="Bump a waiting call: set its credit (seconds), or null for its tier's credit",
    body=PriorityIn,
    response=Call,
    errors=[409],
    access="supervisor",
)
async def set_priority(request: web.Request, body: PriorityIn) -> Call:
    desk = request.app[app_keys.DESK]
    action = "unbump_call" if body.credit_seconds is None else "bump_call"
    actor = audit.of_request(request, action)
    return await desk.set_credit(path_id(request, "call_id"), body.credit_seconds, actor)


@routes.route(
    "POST",
    "/api/calls/{call_id}/end",
    summary="End a call: completed, abandoned (hung up while waiting) or transferred",
    body=EndIn,
    response=Call,
    errors=[409],
    access="supervisor",
)
async def end_call(request: web.Request, body: EndIn) -> Call:
    desk = request.app[app_keys.DESK]
    actor = audit.of_request(request, "end_call")
    return await desk.end(path_id(request, "call_id"), body.outcome, body.reason, audit=actor)


@routes.route(
    "GET",
    "/api/queues",
    summary="Every queue: waiting, longest wait, staffing, service level, EWT",
    response=QueueList,
    access="supervisor",
)
async def list_queues(request: web.Request) -> QueueList:
    return await request.app[app_keys.DESK].summaries()


@routes.route(
    "PUT",
    "/api/queues/{queue}",
    summary="Create or change a queue's configuration",
    body=QueueConfig,
    response=Queue,
    errors=[422],
)
async def put_queue(request: web.Request, body: QueueConfig) -> web.Response:
    name = _queue_name(request.match_info["queue"])
    desk = request.app[app_keys.DESK]
    async with app_keys.pool(request.app).acquire() as conn, conn.transaction():
        created = await desk.directory.put(conn, name, body)
        await actions.record(
            conn, audit.of_request(request, "put_queue"), queue=name, created=created
        )
        await desk.bus.publish(conn, [Event("queues")])
        queue = await desk.directory.get(conn, name)
    return web.json_response(text=queue.model_dump_json(), status=201 if created else 200)


@routes.route(
    "PATCH",
    "/api/queues/{queue}",
    summary="Change some of a queue's settings; the fields left out keep their values",
    body=QueuePatch,
    response=Queue,
    errors=[422],
)
async def patch_queue(request: web.Request, body: QueuePatch) -> Queue:
    name = _queue_name(request.match_info["queue"])
    desk = request.app[app_keys.DESK]
    async with app_keys.pool(request.app).acquire() as conn, conn.transaction():
        current = await desk.directory.get(conn, name)
        merged = current.model_dump(exclude={"name"}) | body.model_dump(
            include=body.model_fields_set
        )
        config = QueueConfig.model_validate(merged)
        await desk.directory.put(conn, name, config)
        await actions.record(
            conn,
            audit.of_request(request, "patch_queue"),
            queue=name,
            fields=sorted(body.model_fields_set),
        )
        await desk.bus.publish(conn, [Event("queues")])
        return await desk.directory.get(conn, name)


@routes.route(
    "GET",
    "/api/queues/{queue}/calls",
    summary="The waiting calls of a queue in serving order, with position and EWT",
    query=CallsQuery,
    response=QueueCalls,
    access="supervisor",
)
async def queue_calls(request: web.Request, query: CallsQuery) -> QueueCalls:
    return await request.app[app_keys.DESK].waiting(request.match_info["queue"], query.limit)


@routes.route(
    "POST",
    "/api/agents",
    summary="Create an agent; the answer holds its token, shown only this once",
    body=AgentIn,
    response=AgentCreated,
    status=201,
    errors=[409],
)
async def create_agent(request: web.Request, body: AgentIn) -> AgentCreated:
    desk = request.app[app_keys.DESK]
    days = request.app[app_keys.SETTINGS].agent_token_days
    async with app_keys.pool(request.app).acquire() as conn:
        return await agents.create_agent(conn, body, desk.directory, token_days=days)


@routes.route(
    "GET",
    "/api/agents",
    summary="Every agent and its state",
    response=AgentList,
    access="supervisor",
)
async def list_agents(request: web.Request) -> AgentList:
    async with app_keys.pool(request.app).acquire() as conn:
        return AgentList(agents=await agents.list_agents(conn))


@routes.route(
    "GET",
    "/api/agents/{agent_id}",
    summary="One agent and its state",
    response=Agent,
    access="supervisor",
)
async def get_agent(request: web.Request) -> Agent:
    async with app_keys.pool(request.app).acquire() as conn:
        return await agents.get_agent(conn, path_id(request, "agent_id"))


@routes.route(
    "PATCH",
    "/api/agents/{agent_id}",
    summary="Change an agent: its endpoint (null: none), the queues it serves, its overflow",
    body=AgentPatch,
    response=Agent,
)
async def patch_agent(request: web.Request, body: AgentPatch) -> Agent:
    agent_id = path_id(request, "agent_id")
    given = body.model_fields_set
    async with app_keys.pool(request.app).acquire() as conn, conn.transaction():
        current = await agents.get_agent(conn, agent_id)
        if "endpoint" in given:
            await agents.set_endpoint(conn, agent_id, body.endpoint)
        if given & {"queues", "overflow_queues"}:
            await agents.set_queues(
                conn,
                agent_id,
                body.queues if body.queues is not None else current.queues,
                body.overflow_queues
                if body.overflow_queues is not None
                else current.overflow_queues,
                request.app[app_keys.DESK].directory,
            )
        changed = await agents.get_agent(conn, agent_id)
    if given & {"queues", "overflow_queues"}:
        request.app[app_keys.ROUTER].wake()  # it may serve a waiting call now
    return changed


@routes.route(
    "POST",
    "/api/agents/{agent_id}/token",
    summary="A new token for the agent (shown once); the old one stops working at once",
    response=AgentCreated,
    status=201,
)
async def reset_agent_token(request: web.Request) -> AgentCreated:
    days = request.app[app_keys.SETTINGS].agent_token_days
    async with app_keys.pool(request.app).acquire() as conn:
        return await agents.reset_token(conn, path_id(request, "agent_id"), token_days=days)


@routes.route(
    "DELETE",
    "/api/agents/{agent_id}",
    summary="Remove an agent: offline at once, its token dead; its calls keep its name",
    response=Agent,
)
async def remove_agent(request: web.Request) -> Agent:
    async with app_keys.pool(request.app).acquire() as conn:
        return await agents.remove(conn, path_id(request, "agent_id"))


def _queue_name(name: str) -> str:
    if not QUEUE_NAME.fullmatch(name):
        raise Unprocessable(
            f"{name!r} is not a queue name: 1 to 63 of a-z, 0-9, _ and -, "
            "starting with a letter or digit",
            field="queue",
        )
    return name
