"""Settings every service shares. Each service subclasses with its own env prefix."""

import math
import ssl
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from aiokafka.helpers import create_ssl_context
from cryptography.fernet import Fernet, MultiFernet
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Values that mean "nobody configured this": refused so a deployment never runs on them.
PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "secret", "please-change", "password", "admin"})
MIN_SECRET_CHARS = 16
MIN_SECRET_BITS = 64  # what an attacker must guess, estimated from the characters used


def estimated_bits(value: str) -> float:
    """A rough guess of a secret's strength: its length times the entropy of the characters
    it uses. Generated tokens score far above the floor; words and repeats do not."""
    counts = Counter(value)
    per_char = -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())
    return per_char * len(value)


def require_real_secret(value: SecretStr | None) -> SecretStr | None:
    if value is None:
        return value
    text = value.get_secret_value().strip()
    if text.lower() in PLACEHOLDER_SECRETS:
        raise ValueError("is a placeholder; set a real secret")
    if len(text) < MIN_SECRET_CHARS or estimated_bits(text) < MIN_SECRET_BITS:
        raise ValueError(
            f"is too weak: use at least {MIN_SECRET_CHARS} random characters "
            "(python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return value


def require_named_tokens(value: SecretStr | None) -> SecretStr | None:
    """`name:token,name:token`, each token a real secret."""
    if value is None:
        return value
    for pair in value.get_secret_value().split(","):
        name, sep, token = pair.strip().partition(":")
        if not (sep and name.strip()):
            raise ValueError("is a list of name:token pairs, comma-separated")
        require_real_secret(SecretStr(token))
    return value


def named_tokens_validator(*fields: str):  # type: ignore[no-untyped-def]
    """A pydantic validator for `name:token,…` settings, each token a real secret."""
    return field_validator(*fields)(require_named_tokens)


def secret_validator(*fields: str):  # type: ignore[no-untyped-def]
    """A pydantic validator refusing placeholder or weak values for the named secret fields."""
    return field_validator(*fields)(require_real_secret)


def multi_fernet(keys: SecretStr) -> MultiFernet:
    """Comma-separated Fernet keys as one MultiFernet: the first seals, any of them opens,
    so a key is rotated by putting a new one first and dropping the old one later."""
    try:
        return MultiFernet([Fernet(k.strip()) for k in keys.get_secret_value().split(",") if k.strip()])
    except ValueError:
        raise ValueError("must be Fernet keys (Fernet.generate_key()), comma-separated") from None


def fernet_keys_validator(*fields: str):  # type: ignore[no-untyped-def]
    """A pydantic validator refusing anything but comma-separated Fernet keys."""

    def check(value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            multi_fernet(value)
        return value

    return field_validator(*fields)(check)


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    # Connection strings carry passwords: never in a repr, so never in a log.
    database_url: str = Field(default="postgresql://tollgate@127.0.0.1:55432/tollgate", repr=False)
    # Migrations run as the schema's owner; the service itself as a role that may only
    # read and write its own tables. None: migrate with database_url.
    database_owner_url: str | None = Field(default=None, repr=False)
    migrate_on_start: bool = True
    # TLS to PostgreSQL: disable | prefer | require | verify-ca | verify-full (libpq's meanings).
    database_sslmode: Literal["disable", "prefer", "require", "verify-ca", "verify-full"] = "prefer"
    database_sslrootcert: Path | None = None
    # Each service has a schema of its own (its Settings name the default).
    schema_name: str
    kafka_bootstrap_servers: str = "127.0.0.1:59092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None  # a client certificate, where the brokers ask for one
    kafka_ssl_keyfile: Path | None = None
    # Consumer groups are "<group_id>.<subscription>"; by default the service's name.
    group_id: str | None = None
    # False runs the HTTP edge and the outbox relay only: a replica that serves requests
    # and leaves consuming to the others (and a test's extra process).
    consumers_enabled: bool = True
    # Caps every consumer's batch (None: each subscription's own size).
    consumer_max_records: int | None = Field(default=None, ge=1)
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    # Operator and internal routes, /metrics, /docs: never exposed by the public Service.
    admin_host: str = "127.0.0.1"
    admin_port: int = 9000
    # Named tokens, `name:token,name:token`: operators (people) and internal (services).
    operator_tokens: SecretStr | None = None
    internal_tokens: SecretStr | None = None
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    request_deadline_s: float = Field(default=15.0, gt=0)
    log_level: str = "INFO"
    db_pool_min: int = Field(default=1, ge=1)
    db_pool_max: int = Field(default=10, ge=1)
    # A request waits this long for a connection, then is answered 503.
    db_acquire_timeout_s: float = Field(default=5.0, gt=0)
    # No statement of a request runs longer than this.
    db_statement_timeout_ms: int = Field(default=10_000, ge=100)

    _tokens = named_tokens_validator("operator_tokens", "internal_tokens")

    def kafka_options(self) -> dict[str, Any]:
        """What every Kafka client of the service (producers, consumers, admin) connects with."""
        options: dict[str, Any] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            options["ssl_context"] = create_ssl_context(
                cafile=str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile else None,
                certfile=str(self.kafka_ssl_certfile) if self.kafka_ssl_certfile else None,
                keyfile=str(self.kafka_ssl_keyfile) if self.kafka_ssl_keyfile else None,
            )
        if self.kafka_security_protocol.startswith("SASL"):
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
            options["sasl_plain_username"] = self.kafka_sasl_username
            options["sasl_plain_password"] = (
                self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None
            )
        return options

    def database_ssl(self) -> ssl.SSLContext | str | bool:
        """What asyncpg's `ssl` takes for `database_sslmode`."""
        mode = self.database_sslmode
        if mode in ("disable", "prefer"):
            return mode
        context = ssl.create_default_context(
            cafile=str(self.database_sslrootcert) if self.database_sslrootcert else None
        )
        context.check_hostname = mode == "verify-full"
        if mode == "require":
            context.verify_mode = ssl.CERT_NONE
        return context


class KeysAccess(ServiceSettings):
    """A service that calls the keys service's internal API: to learn whose a presented
    API key is (customer routes), or to fetch keys to deliver (the notifier)."""

    keys_internal_url: str = "http://127.0.0.1:9103"  # the keys service's admin listener
    keys_token: SecretStr  # this service's token among the keys service's internal tokens

    _keys_token = secret_validator("keys_token")
