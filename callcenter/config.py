"""Settings, read once from the environment (prefix ``CALLCENTER_``).

Everything that differs between a laptop, CI and production lives here, so the
rest of the code takes a ``Settings`` object and never reads the environment.
Secrets are ``SecretStr``: they never appear in a repr, a log line or a response.
"""

from __future__ import annotations

from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Tiers from most to least valuable. The order matters: it is the order of
#: the thresholds and of the queue credit that later issues derive from them.
DEFAULT_TIER_THRESHOLDS: dict[str, Decimal] = {
    "platinum": Decimal("25000"),
    "gold": Decimal("5000"),
    "silver": Decimal("1000"),
    "standard": Decimal("0"),
}


def shipped_bank() -> Path:
    """The learning-question bank shipped with the package (``callcenter/data/assist.yaml``)."""
    return Path(str(resources.files("callcenter").joinpath("data", "assist.yaml")))


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
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins, besides the service's own, allowed to open the agent "
        "socket (JSON list).",
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

    @field_validator("default_region")
    @classmethod
    def _upper_region(cls, value: str) -> str:
        return value.upper()

    @model_validator(mode="after")
    def _check_thresholds(self) -> Settings:
        if not self.tier_thresholds:
            raise ValueError("tier_thresholds needs at least one tier")
        if min(self.tier_thresholds.values()) > 0:
            raise ValueError(
                "the lowest tier threshold must be 0 or below, so every customer has a tier"
            )
        return self

    @property
    def pgdata(self) -> Path:
        """Folder of the embedded PostgreSQL cluster."""
        return self.data_dir / "pgdata"
