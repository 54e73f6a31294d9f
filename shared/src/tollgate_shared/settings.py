"""Settings every service shares. Each service subclasses with its own env prefix."""

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Values that mean "nobody configured this": refused so a deployment never runs on them.
PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "secret", "please-change"})


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    database_url: str = "postgresql://tollgate@127.0.0.1:55432/tollgate"
    # Each service has a schema of its own (its Settings name the default).
    schema_name: str
    kafka_bootstrap_servers: str = "127.0.0.1:59092"
    # Consumer groups are "<group_id>.<subscription>"; by default the service's name.
    group_id: str | None = None
    # Replicas of each topic created at start; None keeps the topic catalog's (a
    # one-node dev broker needs 1).
    kafka_topic_replicas: int | None = Field(default=None, ge=1)
    # False runs the HTTP edge and the outbox relay only: a replica that serves requests
    # and leaves consuming to the others (and a test's extra process).
    consumers_enabled: bool = True
    # Caps every consumer's batch (None: each subscription's own size).
    consumer_max_records: int | None = Field(default=None, ge=1)
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
