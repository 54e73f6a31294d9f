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


def secret_list(value: SecretStr | None) -> tuple[str, ...]:
    """Comma-separated secrets, in order."""
    return tuple(part.strip() for part in (value.get_secret_value() if value else "").split(",") if part.strip())


def require_real_secrets(value: SecretStr | None) -> SecretStr | None:
    for part in secret_list(value):
        require_real_secret(SecretStr(part))
    return value


def secrets_validator(*fields: str):  # type: ignore[no-untyped-def]
    """As secret_validator, for fields holding comma-separated secrets."""
    return field_validator(*fields)(require_real_secrets)


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
    """Every service reads these, each with its own prefix (`LEDGER_DATABASE_URL`, …).
    Each field's docstring is its documentation: docs/deploy.md is generated from them."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, use_attribute_docstrings=True)

    database_url: str = Field(default="postgresql://tollgate@127.0.0.1:15432/tollgate", repr=False)
    """PostgreSQL, as the service's own role: DML on its own schema only. Never in a repr
    or a log (it carries a password)."""
    database_owner_url: str | None = Field(default=None, repr=False)
    """PostgreSQL as the schema's owner, for `migrate` only; it grants the service's role
    what it needs. Unset: `migrate` uses `database_url`."""
    migrate_on_start: bool = True
    """Migrate before serving. Off where a Job runs `migrate` before each rollout (Helm)."""
    database_sslmode: Literal["disable", "prefer", "require", "verify-ca", "verify-full"] = "prefer"
    """TLS to PostgreSQL, with libpq's meanings; `verify-full` in production."""
    database_sslrootcert: Path | None = None
    """The CA bundle PostgreSQL's certificate is checked against (`verify-ca`/`verify-full`)."""
    schema_name: str
    """The service's PostgreSQL schema (each service owns one)."""
    kafka_bootstrap_servers: str = "127.0.0.1:19092"
    """Kafka brokers, `host:port,host:port`."""
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    """How every Kafka client of the service connects; `SASL_SSL` in production."""
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    """The SASL mechanism, with `SASL_*` protocols."""
    kafka_sasl_username: str | None = None
    """The service's Kafka user (the ACLs in docs/security.md are per user)."""
    kafka_sasl_password: SecretStr | None = None
    """That user's password."""
    kafka_ssl_cafile: Path | None = None
    """The CA bundle the brokers' certificates are checked against."""
    kafka_ssl_certfile: Path | None = None
    """A client certificate, where the brokers ask for one (mutual TLS)."""
    kafka_ssl_keyfile: Path | None = None
    """The client certificate's key."""
    group_id: str | None = None
    """Consumer groups are `<group_id>.<subscription>`; unset, the service's name."""
    consumers_enabled: bool = True
    """False runs the HTTP listeners and the outbox relay only: a replica that serves
    requests and leaves consuming to the others."""
    consumer_max_records: int | None = Field(default=None, ge=1)
    """Caps every consumer's batch; unset, each subscription's own size."""
    http_host: str = "127.0.0.1"
    """The public listener's address (`0.0.0.0` in a container)."""
    http_port: int = 8000
    """The public listener's port: public and customer routes, health."""
    admin_host: str = "127.0.0.1"
    """The admin listener's address."""
    admin_port: int = 9000
    """The admin listener's port: operator and internal routes, `/metrics`, `/docs`. Never
    exposed by the public Service."""
    operator_tokens: SecretStr | None = None
    """Operators' named tokens, `alice:<token>,bob:<token>`; the name is what the audit log
    records. Unset: no operator is admitted."""
    internal_tokens: SecretStr | None = None
    """Tollgate services' (and the portal's) named tokens, as `operator_tokens`."""
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    """A request body over this is refused with 413 before anything reads it."""
    request_deadline_s: float = Field(default=15.0, gt=0)
    """A request still running after this is answered 503 with `Retry-After`."""
    log_level: str = "INFO"
    """`DEBUG`, `INFO`, `WARNING` or `ERROR`; logs are JSON lines on stdout."""
    db_pool_min: int = Field(default=1, ge=1)
    """Connections the pool keeps open."""
    db_pool_max: int = Field(default=10, ge=1)
    """Connections the pool opens at most (times replicas: keep under PostgreSQL's
    `max_connections`, or put PgBouncer in front)."""
    db_acquire_timeout_s: float = Field(default=5.0, gt=0)
    """A request waits this long for a connection, then is answered 503."""
    db_statement_timeout_ms: int = Field(default=10_000, ge=100)
    """No statement runs longer than this (PostgreSQL's `statement_timeout`)."""

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

    keys_internal_url: str = "http://127.0.0.1:9103"
    """The keys service's admin listener."""
    keys_token: SecretStr
    """This service's token among the keys service's `internal_tokens`."""

    _keys_token = secret_validator("keys_token")
