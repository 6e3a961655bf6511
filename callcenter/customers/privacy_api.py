"""REST endpoints of customers' data rights: the audit log, export and erasure (admins only).

They are the admin's because each one shows or removes everything about a
person; a supervisor reads records one at a time, and each of those reads is
in the log this room serves.
"""

from __future__ import annotations

from aiohttp import web

from callcenter import app_keys
from callcenter.customers import audit, privacy
from callcenter.customers.audit import AuditPage, AuditQuery
from callcenter.customers.privacy import CustomerExport, Erased
from callcenter.http.routing import Routes, path_id

routes = Routes("privacy")


@routes.route(
    "GET",
    "/api/audit",
    summary="Who read or changed customers' records, newest first, paged",
    query=AuditQuery,
    response=AuditPage,
)
async def read_audit(request: web.Request, query: AuditQuery) -> AuditPage:
    async with app_keys.pool(request.app).acquire() as conn:
        return await audit.page(conn, query)


@routes.route(
    "GET",
    "/api/customers/{customer_id}/export",
    summary="Everything held about a customer, as one document (GDPR art. 15)",
    response=CustomerExport,
)
async def export_customer(request: web.Request) -> CustomerExport:
    async with app_keys.pool(request.app).acquire() as conn:
        return await privacy.export(
            conn, path_id(request, "customer_id"), audit.of_request(request, "export")
        )


@routes.route(
    "POST",
    "/api/customers/{customer_id}/erase",
    summary="Erase a customer's identifiers and free text, keeping anonymous call statistics "
    "(GDPR art. 17); 409 while the customer is on a live call; again: 200, nothing more to do",
    response=Erased,
    errors=[409],
)
async def erase_customer(request: web.Request) -> Erased:
    async with app_keys.pool(request.app).acquire() as conn:
        return await privacy.erase(
            conn, path_id(request, "customer_id"), audit.of_request(request, "erase")
        )
