"""Settings, read once from the environment (prefix ``CALLCENTER_``).

Everything that differs between a laptop, CI and production lives here, so the
rest of the code takes a ``Settings`` object and never reads the environment.
Secrets are ``SecretStr``: they never appear in a repr, a log line or a response.
"""

from __future__ import annotations

import os
import re
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import phonenumbers
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

#: Tiers from most to least valuable. The order matters: it is the order of
#: the thresholds and of the queue credit that later issues derive from them.
DEFAULT_TIER_THRESHOLDS: dict[str, Decimal] = {
    "platinum": Decimal("25000"),
    "gold": Decimal("5000"),
    "silver": Decimal("1000"),
    "standard": Decimal("0"),
}


#: The logging levels CALLCENTER_LOG_LEVEL accepts (any case).
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def shipped_bank() -> Path:
    """The learning-question bank shipped with the package (``callcenter/data/assist.yaml``)."""
    return Path(str(resources.files("callcenter").joinpath("data", "assist.yaml")))


#: E.164 prefixes of premium-rate and shared-cost ranges refused as callback
#: numbers by default, on top of the numbers ``phonenumbers`` itself types as
#: premium-rate or shared-cost: US/CA 900 and 976, UK 09 and 087, DE 0900 and
#: 0137, FR 089.
DEFAULT_REFUSED_PREFIXES = ("+1900", "+1976", "+449", "+4487", "+49900", "+49137", "+3389")


class Settings(BaseSettings):
    """Every setting of the service; the README has a table of them."""

    model_config = SettingsConfigDict(env_prefix="CALLCENTER_", extra="ignore")

    database_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL URL. Absent: an embedded PostgreSQL in DATA_DIR/pgdata.",
    )
    data_dir: Path = Field(
        default=Path("./var"), description="Where the embedded database and files live."
    )
    host: str = Field(default="127.0.0.1", description="Address the HTTP server binds.")
    port: int = Field(default=8080, ge=0, le=65535, description="HTTP port.")
    default_region: str = Field(
        default="US",
        min_length=2,
        max_length=2,
        description="ISO country used to read phone numbers written without a country code.",
    )
    currency: str = Field(
        default="USD",
        pattern=r"^[A-Z]{3}$",
        description="ISO 4217 code of the customers' value figures, shown with every amount "
        "on the agent's panel.",
    )
    tier_thresholds: dict[str, Decimal] = Field(
        default_factory=lambda: dict(DEFAULT_TIER_THRESHOLDS),
        description="Tier name to the smallest net value (lifetime value minus cost to serve) "
        "that earns it, as JSON. The lowest threshold must be 0 or below.",
    )
    pool_min_size: int = Field(default=2, ge=0, description="Smallest database pool.")
    pool_max_size: int = Field(default=10, ge=1, description="Largest database pool.")
    migrate_on_start: bool = Field(
        default=True, description="Apply pending migrations when the service starts."
    )
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="Largest HTTP request body accepted (413 above)."
    )
    log_level: str = Field(default="INFO", description="Python logging level.")
    agent_grace_seconds: float = Field(
        default=30.0,
        gt=0,
        description="An agent whose panel dropped keeps its state this long, then goes offline.",
    )
    agent_heartbeat_seconds: float = Field(
        default=10.0, gt=0, description="Websocket ping interval on the agent socket."
    )
    sweep_seconds: float = Field(
        default=1.0,
        gt=0,
        description="How often the router checks the clocks (timeouts, grace, wrap-up, "
        "maximum wait) and covers a lost notification.",
    )
    stats_window_seconds: float = Field(
        default=900.0, gt=0, description="Window of the answer rate, service level and EWT."
    )
    api_token: SecretStr | None = Field(
        default=None,
        description="A bootstrap admin token (Authorization: Bearer …): for the first "
        "admin's set-up and scripts. People sign in with their own names instead.",
    )
    insecure_open_api: bool = Field(
        default=False,
        description="Let requests without a token act as an admin. Only for a laptop with "
        "no customer data: anyone who reaches the port can read and change everything.",
    )
    session_hours: float = Field(
        default=12.0, gt=0, le=24 * 30, description="How long a sign-in's session lasts."
    )
    agent_token_days: float = Field(
        default=90.0, gt=0, description="How long a new or reset agent token is valid."
    )
    auth_failures_per_minute: int = Field(
        default=20,
        ge=1,
        description="Wrong tokens or passwords one address may send a minute; then 429.",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names (besides localhost, 127.0.0.1, ::1, HOST and PUBLIC_URL's) "
        "that requests may name in their Host header (JSON list). Others get 421.",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token a scrape of /metrics must carry. Absent: /metrics is open "
        "(it holds counts, no customer data; bind to a private address).",
    )
    body_read_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Longest time a request body may take to arrive; then 408 (a client "
        "that sends slowly holds no connection for ever).",
    )
    agent_max_message_bytes: int = Field(
        default=65_536,
        ge=1024,
        description="Largest message an agent's panel may send; a larger one gets an error "
        "(and one over four times this closes the socket, 1009).",
    )
    agent_messages_per_second: int = Field(
        default=20, ge=1, description="Messages one agent socket may send a second; then 429."
    )
    agent_max_sockets: int = Field(
        default=4, ge=1, description="Panels one agent may have open at once; then 429."
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins, besides the service's own, allowed to open the agent "
        "socket (JSON list).",
    )
    ari_url: str | None = Field(
        default=None,
        description="Asterisk's HTTP server, e.g. http://127.0.0.1:8088 (with http.conf's "
        "prefix, if any). Set: the ARI adapter runs; absent: it does not.",
    )
    ari_user: str = Field(default="", description="ARI user (ari.conf).")
    ari_password: SecretStr | None = Field(default=None, description="ARI user's password.")
    ari_app: str = Field(
        default="callcenter",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Stasis application name: the dialplan's Stasis(<app>).",
    )
    ari_dtmf_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="A typed customer number ends this long after its last digit (or at #).",
    )
    ari_moh_class: str = Field(
        default="default", description="Music-on-hold class (musiconhold.conf) for waiting callers."
    )
    ari_ring_seconds: int = Field(
        default=15,
        ge=1,
        le=120,
        description="How long an agent's phone rings (ARI originate timeout) before the call "
        "goes back to its queue and the agent is not responding; 5 suits auto-answer phones, "
        "15-20 desk phones.",
    )
    ari_reconnect_max_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Longest pause between attempts to reconnect the ARI event websocket.",
    )
    ari_callback_endpoint: str | None = Field(
        default=None,
        max_length=200,
        pattern=r"^[A-Za-z][A-Za-z0-9_-]*/\S+$",
        description="Dial string that rings a caller back, e.g. PJSIP/{number}@trunk "
        "({number}: the E.164 number, {digits}: the same without +). Set: Asterisk callers are "
        "offered callbacks (where the queue's rule says so); unset: never.",
    )
    ari_callback_caller_id: str | None = Field(
        default=None,
        max_length=80,
        description="Caller id a callback rings with (the contact center's number); "
        "unset: what the trunk sets.",
    )
    ari_callback_prompt: str | None = Field(
        default=None,
        max_length=500,
        pattern=r"^[a-z]+:\S+$",
        description="ARI media played when a caller is offered a callback, e.g. "
        "sound:custom/press-1-callback; unset: the offer stands silently.",
    )
    ari_callback_confirm_prompt: str | None = Field(
        default=None,
        max_length=500,
        pattern=r"^[a-z]+:\S+$",
        description="ARI media played once the caller took the callback (# or silence: the "
        "calling number; another number then #: that one); unset: silence.",
    )
    ari_callback_confirm_seconds: float = Field(
        default=8.0,
        gt=0,
        le=60,
        description="After taking the callback, this long without a key confirms the number "
        "(counted from the end of the confirm prompt and from each key).",
    )

    # -- telephony ---------------------------------------------------------------
    telephony_default_queue: str = Field(
        default="general",
        pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$",
        description="Queue of telephony calls whose peer names none.",
    )
    webhook_max_bytes: int = Field(
        default=65_536,
        ge=1024,
        description="Largest telephony webhook body accepted (413 above).",
    )
    connect_attempts: int = Field(
        default=3, ge=1, le=10, description="Tries of a connect command before the call goes back."
    )
    connect_backoff_seconds: float = Field(
        default=0.5, ge=0, le=30, description="Pause after the first failed connect; doubles."
    )
    connect_timeout_seconds: float = Field(
        default=5.0, gt=0, le=60, description="Time limit of one command to a telephony peer."
    )
    connect_max_requeues: int = Field(
        default=2,
        ge=0,
        le=20,
        description="A call whose connect failed this many times ends transferred "
        "(connect_failed) instead of going back to the queue once more.",
    )
    release_attempts: int = Field(
        default=4,
        ge=1,
        le=10,
        description="Tries of a hang-up sent to a telephony peer for a call that ended on "
        "our side, before it is given up (and logged as CALLER NOT RELEASED).",
    )
    release_backoff_seconds: float = Field(
        default=1.0, ge=0, le=60, description="Pause after the first failed hang-up; doubles."
    )

    callback_ring_seconds: float = Field(
        default=30.0,
        ge=5,
        le=120,
        description="How long a callback rings the caller before it counts as not answered.",
    )
    callback_refused_prefixes: list[str] = Field(
        default_factory=lambda: list(DEFAULT_REFUSED_PREFIXES),
        max_length=200,
        description="E.164 prefixes a callback never rings (premium-rate and shared-cost "
        "ranges beyond those the phone-number library classifies), a JSON list.",
    )

    public_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="The base URL peers see (scheme, host, optional path prefix), used for "
        "Twilio signatures behind a proxy and the URLs in TwiML. Absent: the request's own.",
    )
    generic_webhook_secret: SecretStr | None = Field(
        default=None,
        description="Shared secret of the generic JSON adapter (HMAC-SHA256). Absent: the "
        "generic endpoint refuses every request.",
    )
    generic_tolerance_seconds: float = Field(
        default=300.0,
        gt=0,
        le=3600,
        description="A generic webhook whose signed timestamp is further than this from now "
        "is refused (replay protection).",
    )
    generic_callback_url: str | None = Field(
        default=None,
        pattern=r"^https?://\S+$",
        description="Where connect and hang-up commands for generic calls are posted (signed "
        "like the webhooks). Absent: the PBX learns them by polling.",
    )
    generic_gather_unknown: bool = Field(
        default=False,
        description="Answer gather (ask for a customer number) for callers not recognised.",
    )
    twilio_account_sid: str | None = Field(
        default=None,
        pattern=r"^AC[0-9a-fA-F]{32}$",
        description="Twilio account SID (AC…), for the REST calls that connect callers.",
    )
    twilio_auth_token: SecretStr | None = Field(
        default=None,
        description="Twilio auth token: verifies X-Twilio-Signature and authenticates REST "
        "calls. Absent: the Twilio endpoints refuse every request.",
    )
    twilio_api_base: str = Field(
        default="https://api.twilio.com",
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="Base URL of Twilio's REST API (tests point it at a fake).",
    )
    twilio_gather_unknown: bool = Field(
        default=False,
        description="Ask callers not recognised by their number for a customer number "
        "(<Gather>) before they wait.",
    )
    twilio_hold_music_url: str = Field(
        default="http://com.twilio.sounds.music.s3.amazonaws.com/MARKOVICHAMP-Borghestral.mp3",
        pattern=r"^https?://\S+$",
        description="What callers hear while they wait.",
    )
    twilio_language: str = Field(
        default="en-US", max_length=16, description="Language of <Say> and <Gather>."
    )
    twilio_callback_from: str | None = Field(
        default=None,
        pattern=r"^\+[1-9][0-9]{6,14}$",
        description="The caller ID (E.164, a number of the Twilio account) callbacks ring "
        "callers from. Absent: Twilio callers are never offered a callback.",
    )
    twilio_callback_machine_detection: bool = Field(
        default=True,
        description="Ask Twilio whether a person or a machine picked up a callback "
        "(MachineDetection=Enable): a voicemail or fax counts as a ring nobody answered, "
        "so no agent is bridged to a recording. Twilio bills it per call and takes a "
        "few seconds after the pick-up to decide.",
    )

    retention_days: int = Field(
        default=365,
        ge=1,
        le=36_500,
        description="Days call notes and text answers are kept; a daily job clears older ones.",
    )
    retention_hour: int = Field(
        default=3, ge=0, le=23, description="Hour of the day (UTC) the retention job runs."
    )

    questions_file: Path | None = Field(
        default_factory=shipped_bank,
        description="The learning-question and treatment bank loaded at start (YAML); "
        "empty: load none. A bad file stops the start with file:line errors.",
    )

    @field_validator("questions_file", mode="before")
    @classmethod
    def _no_file(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("callback_refused_prefixes")
    @classmethod
    def _prefixes(cls, value: list[str]) -> list[str]:
        for prefix in value:
            if not re.fullmatch(r"\+[0-9]{1,15}", prefix):
                raise ValueError(f"{prefix!r} is not an E.164 prefix (+ and digits)")
        return value

    @field_validator("default_region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        region = value.upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{region} is not a country whose phone numbers are known")
        return region

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in LOG_LEVELS:
            raise ValueError(f"{value} is not a logging level")
        return value

    @field_validator("tier_thresholds")
    @classmethod
    def _check_thresholds(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        if not value:
            raise ValueError("it needs at least one tier")
        if min(value.values()) > 0:
            raise ValueError(
                "the lowest tier threshold must be 0 or below, so every customer has a tier"
            )
        return value

    @field_validator(
        "ari_callback_endpoint",
        "ari_callback_caller_id",
        "ari_callback_prompt",
        "ari_callback_confirm_prompt",
        mode="before",
    )
    @classmethod
    def _unset_if_blank(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("ari_callback_endpoint")
    @classmethod
    def _check_callback_endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            value.format(number="+1", digits="1")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"only {{number}} and {{digits}} may be filled in ({exc!r}); "
                "write a literal brace twice"
            ) from None
        return value

    @field_validator("ari_url")
    @classmethod
    def _check_ari_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("ari_url must be an http:// or https:// URL with a host")
        if parts.query or parts.fragment:
            raise ValueError("ari_url takes no query or fragment")
        if parts.username or parts.password:
            raise ValueError("put the ARI credentials in ari_user and ari_password, not the URL")
        return value.strip().rstrip("/")

    @model_validator(mode="after")
    def _check_twilio_connects(self) -> Settings:
        # TwiML sent by REST must use absolute URLs: without the public URL the
        # connect's <Dial> has no action, and Twilio hangs up a caller whose
        # agent does not answer instead of letting us put them back in the queue.
        if self.twilio_account_sid and not self.public_url:
            raise ValueError(
                "CALLCENTER_TWILIO_ACCOUNT_SID (REST connects) needs CALLCENTER_PUBLIC_URL, "
                "the base URL Twilio calls: the connect's <Dial action> must be absolute"
            )
        return self

    @property
    def pgdata(self) -> Path:
        """Folder of the embedded PostgreSQL cluster."""
        return self.data_dir / "pgdata"


# -- an operator's mistakes, one line each -------------------------------------------

ENV_PREFIX = "CALLCENTER_"

#: What a setting accepts, where its type and bounds alone would say too little.
_ACCEPTS: dict[str, str] = {
    "default_region": "a two-letter ISO country code, e.g. US, GB or DE",
    "currency": "a three-letter ISO 4217 code in capitals, e.g. USD, EUR or GBP",
    "log_level": "one of " + ", ".join(LOG_LEVELS),
    "tier_thresholds": "a JSON object of tier name to the smallest net value that earns it, "
    'the lowest 0 or below, e.g. {"gold": 5000, "standard": 0}',
    "allowed_hosts": 'a JSON list of host names, e.g. ["cc.example.com"] (["*"]: any)',
    "allowed_origins": 'a JSON list of origins, e.g. ["https://desk.example.com"]',
    "callback_refused_prefixes": 'a JSON list of E.164 prefixes, e.g. ["+1900", "+449"]',
    "public_url": "an http:// or https:// URL with a host and no query, "
    "e.g. https://cc.example.com",
    "ari_url": "an http:// or https:// URL with a host, no credentials and no query, "
    "e.g. http://127.0.0.1:8088",
    "generic_callback_url": "an http:// or https:// URL",
    "twilio_api_base": "an http:// or https:// URL with a host and no query",
    "twilio_hold_music_url": "an http:// or https:// URL",
    "twilio_account_sid": "AC followed by 32 hexadecimal digits",
    "twilio_callback_from": "an E.164 number of the Twilio account, e.g. +14155550100",
    "ari_app": "1 to 64 letters, digits, '_', '.' or '-'",
    "ari_callback_endpoint": "an Asterisk dial string, Tech/resource, with {number} or {digits} "
    "for the number to ring, e.g. PJSIP/{number}@trunk",
    "ari_callback_prompt": "an ARI media URI, e.g. sound:custom/press-1-callback",
    "ari_callback_confirm_prompt": "an ARI media URI, e.g. sound:custom/callback-confirm",
    "telephony_default_queue": "a queue name: lower-case letters, digits, '_' or '-'",
}


def env_name(field: str) -> str:
    """The environment variable of a setting: ``port`` -> ``CALLCENTER_PORT``."""
    return ENV_PREFIX + field.upper()


def _number_range(metadata: list[Any]) -> str:
    parts = []
    for item in metadata:
        for attr, word in (("ge", "from"), ("gt", "above"), ("le", "to"), ("lt", "below")):
            bound = getattr(item, attr, None)
            if bound is not None:
                parts.append(f"{word} {bound}")
    return " " + " ".join(parts) if parts else ""


def accepts(field: str) -> str:
    """What the setting ``field`` accepts, in words an operator reads."""
    if field in _ACCEPTS:
        return _ACCEPTS[field]
    info = Settings.model_fields[field]
    kind = info.annotation
    optional = kind is not None and type(None) in getattr(kind, "__args__", ())
    if optional:
        kind = next(a for a in kind.__args__ if a is not type(None))  # type: ignore[union-attr]
    if kind is bool:
        text = "true or false"
    elif kind is int:
        text = "a whole number" + _number_range(info.metadata)
    elif kind is float:
        text = "a number" + _number_range(info.metadata)
    elif kind is Path:
        text = "a file or folder path"
    elif kind is SecretStr:
        text = "a secret (any text)"
    else:
        text = "text"
    return text + (" (or unset)" if optional else "")


def _shown(field: str, value: Any) -> str:
    if field not in Settings.model_fields or Settings.model_fields[field].annotation in (
        SecretStr,
        SecretStr | None,
    ):
        return ""
    raw = os.environ.get(env_name(field))  # as the operator wrote it, not as parsed
    text = raw if raw is not None else value if isinstance(value, str) else repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"={text!r}"


def explain_settings_error(exc: ValidationError | SettingsError) -> list[str]:
    """One line per bad setting: the variable, the value given and what it accepts.

    Secrets are never shown. A rule over several settings (``loc`` empty) says
    itself which variables it is about.
    """
    if isinstance(exc, SettingsError):
        # pydantic-settings could not even decode the value (a JSON setting that is not JSON)
        match = re.search(r'field "(\w+)"', str(exc))
        if match is None:
            return [str(exc)]
        field = match.group(1)
        name = env_name(field)
        given = _shown(field, os.environ.get(name, ""))
        return [f"{name}{given} is not valid JSON; it accepts {accepts(field)}"]
    lines = []
    for error in exc.errors():
        loc = error.get("loc") or ()
        reason = error.get("ctx", {}).get("error") if error["type"] == "value_error" else None
        if not loc or not isinstance(loc[0], str) or loc[0] not in Settings.model_fields:
            lines.append(str(reason or error["msg"]))
            continue
        field = loc[0]
        head = f"{env_name(field)}{_shown(field, error.get('input'))}"
        if reason is not None:
            lines.append(f"{head}: {reason}; it accepts {accepts(field)}")
        else:
            lines.append(f"{head} is not accepted; it accepts {accepts(field)}")
    return lines
