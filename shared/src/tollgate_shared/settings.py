"""Settings every service shares. Each service subclasses with its own env prefix."""

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Values that mean "nobody configured this": refused so a deployment never runs on them.
PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "secret", "please-change"})


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    database_url: str = "postgresql://tollgate@127.0.0.1:55432/tollgate"
    kafka_bootstrap_servers: str = "127.0.0.1:59092"
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    log_level: str = "INFO"
    db_pool_min: int = Field(default=1, ge=1)
    db_pool_max: int = Field(default=10, ge=1)


def require_real_secret(value: SecretStr | None) -> SecretStr | None:
    if value is not None and value.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS:
        raise ValueError("is a placeholder; set a real secret")
    return value


def secret_validator(*fields: str):  # type: ignore[no-untyped-def]
    """A pydantic validator refusing placeholder values for the named secret fields."""
    return field_validator(*fields)(require_real_secret)
