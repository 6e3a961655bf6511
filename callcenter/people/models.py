"""What the people endpoints take and give."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from callcenter.people.passwords import MIN_LENGTH

PersonName = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9._@-]{1,64}$")
]
Password = Annotated[str, StringConstraints(min_length=MIN_LENGTH, max_length=256)]
#: The roles a person or an integration may have (agents are made as agents).
PersonRole = Literal["supervisor", "admin"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PersonIn(_Strict):
    name: PersonName
    role: PersonRole
    password: Password | None = Field(
        default=None, description="Left out: one is generated and shown once in the answer."
    )


class PersonPatch(_Strict):
    role: PersonRole | None = None
    password: Password | None = None


class Person(BaseModel):
    id: int
    name: str
    role: PersonRole
    created_at: datetime
    removed_at: datetime | None = None


class PersonCreated(BaseModel):
    person: Person
    password: str | None = Field(
        default=None, description="The generated password, shown once (none if one was given)."
    )


class PeopleList(BaseModel):
    people: list[Person]


class SignIn(_Strict):
    name: PersonName
    password: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class SessionOut(BaseModel):
    token: str = Field(description="The session's bearer token, shown once.")
    expires_at: datetime
    person: Person


class WhoAmI(BaseModel):
    who: str = Field(description="role:name, as records and the audit log name this caller.")
    role: str
    name: str
    kind: str


class IntegrationIn(_Strict):
    label: PersonName = Field(description="What uses the token, e.g. crm-sync.")
    role: PersonRole
    days: int = Field(default=365, ge=1, le=3650, description="Days until it expires.")


class Integration(BaseModel):
    id: int
    label: str
    role: PersonRole
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


class IntegrationCreated(BaseModel):
    integration: Integration
    token: str = Field(description="The bearer token, shown once.")


class IntegrationList(BaseModel):
    integrations: list[Integration]
