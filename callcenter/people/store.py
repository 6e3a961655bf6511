"""People, sessions and integration tokens in PostgreSQL.

Only digests of tokens are stored, and argon2id hashes of passwords; a token
or a generated password is shown once, in the answer that made it.
"""

from __future__ import annotations

import asyncpg

from callcenter.db.pool import Conn
from callcenter.db.sql import load_queries
from callcenter.errors import Conflict, NotFound, Unauthorized
from callcenter.http.auth import Principal, Role, new_token, token_digest
from callcenter.people import passwords
from callcenter.people.models import (
    Integration,
    IntegrationCreated,
    IntegrationIn,
    Person,
    PersonCreated,
    PersonIn,
    PersonPatch,
    SessionOut,
)

Q = load_queries("callcenter.people", "queries.sql")

#: The unique constraint a second person with the same name runs into.
NAME_TAKEN = "people_name_key"


async def create_person(conn: Conn, data: PersonIn) -> PersonCreated:
    generated = passwords.generate() if data.password is None else None
    password_hash = await passwords.hash_password(data.password or generated or "")
    try:
        row = await conn.fetchrow(Q["create_person"], data.name, data.role, password_hash)
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != NAME_TAKEN:
            detail = f"the person conflicts with an existing one ({exc.constraint_name})"
            raise Conflict(detail) from exc
        raise Conflict(f"a person named {data.name!r} exists", field="name") from None
    assert row is not None
    return PersonCreated(person=Person.model_validate(dict(row)), password=generated)


async def list_people(conn: Conn, *, removed: bool = False) -> list[Person]:
    return [Person.model_validate(dict(r)) for r in await conn.fetch(Q["people"], removed)]


async def get_person(conn: Conn, person_id: int) -> Person:
    row = await conn.fetchrow(Q["person"], person_id)
    if row is None:
        raise NotFound(f"no person with id {person_id}")
    return Person.model_validate(dict(row))


async def find_id(conn: Conn, name: str) -> int:
    person_id: int | None = await conn.fetchval(Q["person_id_by_name"], name)
    if person_id is None:
        raise NotFound(f"no person named {name!r}")
    return person_id


async def change_person(conn: Conn, person_id: int, patch: PersonPatch) -> Person:
    """A new role takes effect on the person's next request; a new password ends every
    session the person has (they sign in again with it)."""
    async with conn.transaction():
        if (
            patch.role is not None
            and await conn.fetchval(Q["set_role"], person_id, patch.role) is None
        ):
            raise NotFound(f"no person with id {person_id}")
        if patch.password is not None:
            digest = await passwords.hash_password(patch.password)
            if await conn.fetchval(Q["set_password_hash"], person_id, digest) is None:
                raise NotFound(f"no person with id {person_id}")
        return await get_person(conn, person_id)


async def remove_person(conn: Conn, person_id: int) -> Person:
    """The person can no longer sign in, and every session of theirs ends now."""
    await conn.execute(Q["remove_person"], person_id)
    person = await get_person(conn, person_id)
    return person


async def sign_in(conn: Conn, name: str, password: str, *, session_seconds: float) -> SessionOut:
    """A session for ``name`` if the password is theirs; 401 otherwise (which, is not said)."""
    row = await conn.fetchrow(Q["person_for_sign_in"], name)
    stored = row["password_hash"] if row is not None else passwords.dummy_hash()
    if not await passwords.verify(stored, password) or row is None:
        raise Unauthorized("the name or the password is not right")
    token, digest = new_token()
    made = await conn.fetchrow(Q["create_session"], digest, row["id"], session_seconds)
    assert made is not None
    return SessionOut(
        token=token, expires_at=made["expires_at"], person=await get_person(conn, row["id"])
    )


async def end_credential(conn: Conn, credential_id: int) -> bool:
    """Sign a session out (or revoke any credential); False when it had already ended."""
    return await conn.fetchval(Q["revoke_credential"], credential_id) is not None


async def create_integration(conn: Conn, data: IntegrationIn) -> IntegrationCreated:
    token, digest = new_token()
    row = await conn.fetchrow(
        Q["create_integration"], digest, data.label, data.role, data.days * 86_400.0
    )
    assert row is not None
    return IntegrationCreated(integration=Integration.model_validate(dict(row)), token=token)


async def list_integrations(conn: Conn) -> list[Integration]:
    return [Integration.model_validate(dict(r)) for r in await conn.fetch(Q["integrations"])]


async def revoke_integration(conn: Conn, integration_id: int) -> None:
    if await conn.fetchval(Q["revoke_integration"], integration_id) is None:
        raise NotFound(f"no live integration token with id {integration_id}")


async def principal_for_token(conn: Conn, token: str) -> Principal | None:
    """Who a session or integration token stands for; None if it is unknown or has ended."""
    row = await conn.fetchrow(Q["principal_for_token"], token_digest(token))
    if row is None:
        return None
    if row["kind"] == "integration":
        return Principal(
            "integration",
            Role(row["token_role"]),
            row["label"],
            id=row["credential_id"],
            credential_id=row["credential_id"],
        )
    if row["person_id"] is None:  # the person was removed
        return None
    return Principal(
        "session",
        Role(row["person_role"]),
        row["person_name"],
        id=row["person_id"],
        credential_id=row["credential_id"],
    )
