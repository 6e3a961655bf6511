"""Wire models of the customers room: what integrators send and read.

These models are the single source of the request validation and of the
OpenAPI document, so a field's description here is its documentation.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints, field_validator

from callcenter.http.routing import BIGINT_MAX

#: A CRM export's columns, in order: what ``callcenter sample-data`` writes and
#: ``callcenter import`` reads (the JSON-lines form uses the same keys).
COLUMNS = (
    "customer_number",
    "name",
    "email",
    "phones",
    "lifetime_value",
    "annual_margin",
    "cost_to_serve",
)

Money = Annotated[Decimal, Field(max_digits=14, decimal_places=2)]
NonNegativeMoney = Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=2)]
CustomerNumber = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^\S+$")
]
Name = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
PhoneText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CustomerIn(_Strict):
    """A customer as a CRM creates it. Phones may be written in any common format."""

    customer_number: CustomerNumber | None = Field(
        default=None, description="The number customers type in the IVR; unique."
    )
    name: Name = ""
    email: EmailStr | None = None
    phones: list[PhoneText] = Field(default_factory=list, max_length=20)
    shared_phones: list[PhoneText] = Field(
        default_factory=list,
        max_length=20,
        description="Numbers of `phones` that are shared on purpose (a household, a "
        "switchboard). Any other phone that already belongs to another customer is refused "
        "(409 naming that customer): a shared number makes that customer's calls "
        "'ask who is calling'.",
    )
    lifetime_value: NonNegativeMoney = Decimal(0)
    annual_margin: Money = Decimal(0)
    cost_to_serve: NonNegativeMoney = Decimal(0)


class CustomerPatch(_Strict):
    """Fields to change; absent fields stay. ``phones`` replaces the customer's CRM phones."""

    customer_number: CustomerNumber | None = None
    name: Name | None = None
    email: EmailStr | None = None
    phones: list[PhoneText] | None = Field(default=None, max_length=20)
    shared_phones: list[PhoneText] = Field(
        default_factory=list,
        max_length=20,
        description="Numbers of `phones` that are shared on purpose (a household, a "
        "switchboard). Any other phone that already belongs to another customer is refused "
        "(409 naming that customer): a shared number makes that customer's calls "
        "'ask who is calling'.",
    )
    lifetime_value: NonNegativeMoney | None = None
    annual_margin: Money | None = None
    cost_to_serve: NonNegativeMoney | None = None

    @field_validator("name", "lifetime_value", "annual_margin", "cost_to_serve", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Absent means "unchanged"; an explicit null would blank a required column.
        if value is None:
            raise ValueError("may be left out but not null")
        return value


class PhoneSource(StrEnum):
    crm = "crm"
    linked = "linked"
    provisional = "provisional"


class Phone(BaseModel):
    number: str = Field(description="E.164")
    source: PhoneSource
    linked_at: datetime
    linked_via: str | None = None


class TierPin(BaseModel):
    tier: str
    reason: str
    pinned_by: str
    pinned_at: datetime


class Customer(BaseModel):
    id: int
    customer_number: str | None
    name: str
    email: str | None
    phones: list[Phone]
    lifetime_value: Decimal
    annual_margin: Decimal
    cost_to_serve: Decimal
    net_value: Decimal
    tier: str = Field(description="The tier the service acts on: the pin if any, else computed.")
    computed_tier: str
    pin: TierPin | None
    needs: dict[str, Any]
    provisional: bool
    merged_into: int | None
    created_at: datetime
    updated_at: datetime
    erased_at: datetime | None = Field(
        default=None, description="When its identifiers and free text were erased (art. 17)."
    )


class CustomerSummary(BaseModel):
    """What identification needs to hand on: enough to route and greet."""

    id: int
    customer_number: str | None
    name: str
    tier: str
    provisional: bool


class CustomerList(BaseModel):
    customers: list[Customer]
    next_after: int | None = Field(
        default=None, description="Pass as ?after= to read the next page; null on the last page."
    )


class TierPinIn(_Strict):
    tier: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
    pinned_by: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
        | None
    ) = Field(
        default=None,
        deprecated=True,
        description="Ignored: the pin records who is signed in (role:name). Accepted so "
        "that older scripts keep working.",
    )


class PhoneIn(_Strict):
    phone: PhoneText
    shared: bool = Field(
        default=False,
        description="The number is shared on purpose with the customers who have it already; "
        "without this, a number of another customer is refused (409 naming them).",
    )


class MergeIn(_Strict):
    into_customer_id: int = Field(gt=0, le=BIGINT_MAX)


class IdentifyIn(_Strict):
    """A caller as the telephony side sees it: the calling number and what was typed."""

    ani: str | None = Field(default=None, max_length=64, description="Calling number, raw.")
    customer_number: str | None = Field(default=None, max_length=64)


class Outcome(StrEnum):
    known = "known"
    pending = "pending"
    conflict = "conflict"
    multiple = "multiple"
    unknown = "unknown"


class Resolution(BaseModel):
    """The answer of ``resolve``; see ``customers.identity`` for what each outcome means."""

    outcome: Outcome
    customer: CustomerSummary | None = Field(
        description="Who this call is for; null for a withheld caller or a shared number."
    )
    matched_by: Literal["phone", "customer_number"] | None = None
    phone: str | None = Field(default=None, description="The calling number in E.164, if usable.")
    candidates: list[CustomerSummary] = Field(
        default_factory=list,
        description="multiple: the customers sharing the number; conflict: the phone's owners.",
    )
    conflict_id: int | None = None
    customer_number_not_found: bool = False


class Interaction(BaseModel):
    id: int
    channel: str
    started_at: datetime
    ended_at: datetime | None
    agent: str | None
    outcome: str | None
    notes: str | None
    identified_by: str | None
    details: dict[str, Any]


class History(BaseModel):
    customer_id: int
    interactions: list[Interaction]
    next_before: int | None = Field(
        default=None,
        description="Pass as ?before= to read older contacts; null when none are left.",
    )


class IdentityConflict(BaseModel):
    id: int
    phone: str
    phone_customer_ids: list[int]
    typed_customer_id: int
    customer_number: str
    created_at: datetime


class ConflictList(BaseModel):
    conflicts: list[IdentityConflict]
