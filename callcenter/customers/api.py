"""REST endpoints of the customers room: ``/api/customers...`` and ``/api/identify``."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from callcenter import app_keys
from callcenter.customers import audit, identity, store
from callcenter.customers.models import (
    ConflictList,
    Customer,
    CustomerIn,
    CustomerList,
    CustomerPatch,
    History,
    IdentifyIn,
    MergeIn,
    PhoneIn,
    Resolution,
    TierPinIn,
)
from callcenter.db.pool import Conn
from callcenter.errors import BadRequest
from callcenter.events import Event
from callcenter.http.auth import principal
from callcenter.http.routing import BIGINT_MAX, Routes, path_id

routes = Routes("customers")


class CustomerQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone: str | None = Field(default=None, description="Any common format; matches by E.164.")
    customer_number: str | None = None
    after: int = Field(
        default=0,
        ge=0,
        le=BIGINT_MAX,
        description="Paging cursor: the last id of the previous page.",
    )
    limit: int = Field(default=50, ge=1, le=500)


class HistoryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    before: int | None = Field(
        default=None, gt=0, le=BIGINT_MAX, description="Paging cursor from next_before."
    )
    limit: int = Field(default=20, ge=1, le=200)


class ConflictQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: int | None = Field(default=None, gt=0, le=BIGINT_MAX)
    limit: int = Field(default=50, ge=1, le=500)


@routes.route(
    "POST",
    "/api/customers",
    summary="Create a customer",
    body=CustomerIn,
    response=Customer,
    status=201,
    errors=[409],
)
async def create_customer(request: web.Request, body: CustomerIn) -> Customer:
    async with app_keys.pool(request.app).acquire() as conn:
        return await store.create_customer(
            conn,
            body,
            request.app[app_keys.CUSTOMER_RULES],
            audit=audit.of_request(request, "create", fields=_fields(body)),
        )


@routes.route(
    "GET",
    "/api/customers",
    summary="Look up customers by phone (any format) or customer number, or page through all",
    query=CustomerQuery,
    response=CustomerList,
    access="supervisor",
)
async def find_customers(request: web.Request, query: CustomerQuery) -> CustomerList:
    rules = request.app[app_keys.CUSTOMER_RULES]
    async with app_keys.pool(request.app).acquire() as conn:
        if query.phone is not None and query.customer_number is not None:
            raise BadRequest("look up by phone or by customer_number, not both", field="phone")
        # Each customer the lookup returns is a read of their record; the number asked for
        # is not kept (the log must hold nothing an erasure would have to remove).
        if query.phone is not None:
            seen = audit.of_request(request, "lookup", by="phone")
            return CustomerList(
                customers=await store.find_by_phone(conn, query.phone, rules, audit=seen)
            )
        if query.customer_number is not None:
            seen = audit.of_request(request, "lookup", by="customer_number")
            return CustomerList(
                customers=await store.find_by_number(conn, query.customer_number, audit=seen)
            )
        seen = audit.of_request(request, "list")
        customers, next_after = await store.list_customers(
            conn, query.after, query.limit, audit=seen
        )
        return CustomerList(customers=customers, next_after=next_after)


@routes.route(
    "GET",
    "/api/customers/{customer_id}",
    summary="Read a customer",
    response=Customer,
    access="supervisor",
)
async def get_customer(request: web.Request) -> Customer:
    async with app_keys.pool(request.app).acquire() as conn:
        return await store.get_customer(
            conn, path_id(request, "customer_id"), audit=audit.of_request(request, "read")
        )


@routes.route(
    "PATCH",
    "/api/customers/{customer_id}",
    summary="Change a customer; the tier is recomputed from the figures",
    body=CustomerPatch,
    response=Customer,
    errors=[409],
)
async def update_customer(request: web.Request, body: CustomerPatch) -> Customer:
    async with app_keys.pool(request.app).acquire() as conn:
        customer = await store.update_customer(
            conn,
            path_id(request, "customer_id"),
            body,
            request.app[app_keys.CUSTOMER_RULES],
            audit=audit.of_request(request, "update", fields=_fields(body)),
        )
        return await _value_changed(request, conn, customer)


@routes.route(
    "PUT",
    "/api/customers/{customer_id}/tier-pin",
    summary="Pin a tier (a supervisor's decision, with a reason; who is the signed-in caller)",
    body=TierPinIn,
    response=Customer,
    access="supervisor",
)
async def pin_tier(request: web.Request, body: TierPinIn) -> Customer:
    async with app_keys.pool(request.app).acquire() as conn:
        customer = await store.pin_tier(
            conn,
            path_id(request, "customer_id"),
            body.tier,
            body.reason,
            principal(request).who,
            request.app[app_keys.CUSTOMER_RULES],
            audit=audit.of_request(request, "pin_tier", tier=body.tier),
        )
        return await _value_changed(request, conn, customer)


@routes.route(
    "DELETE",
    "/api/customers/{customer_id}/tier-pin",
    summary="Remove a pinned tier; the computed tier applies again",
    response=Customer,
    access="supervisor",
)
async def unpin_tier(request: web.Request) -> Customer:
    async with app_keys.pool(request.app).acquire() as conn:
        customer = await store.unpin_tier(
            conn, path_id(request, "customer_id"), audit=audit.of_request(request, "unpin_tier")
        )
        return await _value_changed(request, conn, customer)


@routes.route(
    "POST",
    "/api/customers/{customer_id}/phones",
    summary="Add a phone number (409 if another customer has it, unless `shared`)",
    body=PhoneIn,
    response=Customer,
    errors=[409],
)
async def add_phone(request: web.Request, body: PhoneIn) -> Customer:
    async with app_keys.pool(request.app).acquire() as conn:
        return await store.add_phone(
            conn,
            path_id(request, "customer_id"),
            body.phone,
            request.app[app_keys.CUSTOMER_RULES],
            shared=body.shared,
            audit=audit.of_request(request, "add_phone"),
        )


@routes.route(
    "DELETE",
    "/api/customers/{customer_id}/phones/{phone}",
    summary="Remove a phone number (any format)",
    response=Customer,
    errors=[422],
)
async def remove_phone(request: web.Request) -> Customer:
    async with app_keys.pool(request.app).acquire() as conn:
        return await store.remove_phone(
            conn,
            path_id(request, "customer_id"),
            request.match_info["phone"],
            request.app[app_keys.CUSTOMER_RULES],
            audit=audit.of_request(request, "remove_phone"),
        )


@routes.route(
    "POST",
    "/api/customers/{customer_id}/merge",
    summary="Merge a provisional customer (an unknown caller) into a real one, history included",
    body=MergeIn,
    response=Customer,
    errors=[409],
)
async def merge(request: web.Request, body: MergeIn) -> Customer:
    provisional_id = path_id(request, "customer_id")
    async with app_keys.pool(request.app).acquire() as conn, conn.transaction():
        await store.merge_provisional(conn, provisional_id, body.into_customer_id)
        done = audit.of_request(
            request, "merge", provisional=provisional_id, into=body.into_customer_id
        )
        await audit.record(conn, done, [provisional_id, body.into_customer_id])
        return await store.get_customer(conn, body.into_customer_id)


@routes.route(
    "GET",
    "/api/customers/{customer_id}/history",
    summary="Previous contacts, newest first, paged",
    query=HistoryQuery,
    response=History,
    access="supervisor",
)
async def history(request: web.Request, query: HistoryQuery) -> History:
    async with app_keys.pool(request.app).acquire() as conn:
        return await store.history(
            conn,
            path_id(request, "customer_id"),
            query.before,
            query.limit,
            audit=audit.of_request(request, "history"),
        )


@routes.route(
    "POST",
    "/api/identify",
    summary="Identify a caller from the calling number and a typed customer number",
    body=IdentifyIn,
    response=Resolution,
)
async def identify(request: web.Request, body: IdentifyIn) -> Resolution:
    rules = request.app[app_keys.CUSTOMER_RULES]
    async with app_keys.pool(request.app).acquire() as conn:
        found = await identity.resolve(
            conn, body.ani, body.customer_number, region=rules.region, lowest_tier=rules.lowest_tier
        )
        shown = [c.id for c in (found.customer, *found.candidates) if c is not None]
        seen = audit.of_request(request, "identify", outcome=found.outcome)
        await audit.record(conn, seen, list(dict.fromkeys(shown)))
        return found


@routes.route(
    "GET",
    "/api/identity/conflicts",
    summary="Typed customer numbers that disagreed with the phone's owner, newest first",
    query=ConflictQuery,
    response=ConflictList,
    access="supervisor",
)
async def list_conflicts(request: web.Request, query: ConflictQuery) -> ConflictList:
    async with app_keys.pool(request.app).acquire() as conn:
        return await store.conflicts(conn, query.customer_id, query.limit)


def _fields(body: CustomerIn | CustomerPatch) -> list[str]:
    """The names of the fields a request set: what changed, without the values."""
    return sorted(body.model_dump(exclude_unset=True))


async def _value_changed(request: web.Request, conn: Conn, customer: Customer) -> Customer:
    """Announce a possible tier change: the queue moves the customer's waiting calls at once."""
    await request.app[app_keys.BUS].publish(conn, [Event("customer", str(customer.id))])
    return customer
