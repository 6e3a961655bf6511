"""Signing in and out, and the admin's endpoints for people and integration tokens."""

from __future__ import annotations

from aiohttp import web

from callcenter import app_keys
from callcenter.errors import Unauthorized
from callcenter.http.auth import principal
from callcenter.http.routing import Routes, path_id
from callcenter.people import store
from callcenter.people.models import (
    IntegrationCreated,
    IntegrationIn,
    IntegrationList,
    PeopleList,
    Person,
    PersonCreated,
    PersonIn,
    PersonPatch,
    SessionOut,
    SignIn,
    WhoAmI,
)

routes = Routes("people")


@routes.route(
    "POST",
    "/api/session",
    summary="Sign in with a name and password: a session token that expires",
    body=SignIn,
    response=SessionOut,
    status=201,
    errors=[401, 429],
    access="public",
)
async def sign_in(request: web.Request, body: SignIn) -> SessionOut:
    request.app[app_keys.GATE].attempt(request, body.name)
    hours = request.app[app_keys.SETTINGS].session_hours
    async with app_keys.pool(request.app).acquire() as conn:
        return await store.sign_in(conn, body.name, body.password, session_seconds=hours * 3600.0)


@routes.route(
    "GET",
    "/api/session",
    summary="Who this token stands for (role:name, as the records name it)",
    response=WhoAmI,
    access="agent",
)
async def who_am_i(request: web.Request) -> WhoAmI:
    me = principal(request)
    return WhoAmI(who=me.who, role=me.role.value, name=me.name, kind=me.kind)


@routes.route(
    "DELETE",
    "/api/session",
    summary="Sign out: the session token stops working at once",
    status=204,
    access="agent",
)
async def sign_out(request: web.Request) -> None:
    me = principal(request)
    if me.kind != "session" or me.credential_id is None:
        raise Unauthorized("only a session signs out; revoke other tokens instead")
    async with app_keys.pool(request.app).acquire() as conn:
        await store.end_credential(conn, me.credential_id)


@routes.route(
    "POST",
    "/api/people",
    summary="Add a supervisor or an admin (a password is generated if none is given)",
    body=PersonIn,
    response=PersonCreated,
    status=201,
    errors=[409],
)
async def add_person(request: web.Request, body: PersonIn) -> PersonCreated:
    async with app_keys.pool(request.app).acquire() as conn:
        return await store.create_person(conn, body)


@routes.route("GET", "/api/people", summary="Supervisors and admins", response=PeopleList)
async def people(request: web.Request) -> PeopleList:
    async with app_keys.pool(request.app).acquire() as conn:
        return PeopleList(people=await store.list_people(conn))


@routes.route("GET", "/api/people/{person_id}", summary="One person", response=Person)
async def person(request: web.Request) -> Person:
    async with app_keys.pool(request.app).acquire() as conn:
        return await store.get_person(conn, path_id(request, "person_id"))


@routes.route(
    "PATCH",
    "/api/people/{person_id}",
    summary="Change a person's role or password",
    body=PersonPatch,
    response=Person,
)
async def change_person(request: web.Request, body: PersonPatch) -> Person:
    async with app_keys.pool(request.app).acquire() as conn:
        return await store.change_person(conn, path_id(request, "person_id"), body)


@routes.route(
    "DELETE",
    "/api/people/{person_id}",
    summary="Remove a person: they cannot sign in, and their sessions end now",
    response=Person,
)
async def remove_person(request: web.Request) -> Person:
    async with app_keys.pool(request.app).acquire() as conn:
        return await store.remove_person(conn, path_id(request, "person_id"))


@routes.route(
    "POST",
    "/api/integrations",
    summary="A named token with a role, for an integration such as CRM sync (shown once)",
    body=IntegrationIn,
    response=IntegrationCreated,
    status=201,
)
async def add_integration(request: web.Request, body: IntegrationIn) -> IntegrationCreated:
    async with app_keys.pool(request.app).acquire() as conn:
        return await store.create_integration(conn, body)


@routes.route(
    "GET",
    "/api/integrations",
    summary="Integration tokens (never the tokens themselves)",
    response=IntegrationList,
)
async def integrations(request: web.Request) -> IntegrationList:
    async with app_keys.pool(request.app).acquire() as conn:
        return IntegrationList(integrations=await store.list_integrations(conn))


@routes.route(
    "DELETE",
    "/api/integrations/{integration_id}",
    summary="Revoke an integration token: it stops working at once",
    status=204,
)
async def revoke_integration(request: web.Request) -> None:
    async with app_keys.pool(request.app).acquire() as conn:
        await store.revoke_integration(conn, path_id(request, "integration_id"))
