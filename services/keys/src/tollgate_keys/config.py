from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from tollgate_shared.settings import (
    ServiceSettings,
    fernet_keys_validator,
    named_tokens_validator,
    secret_validator,
    secrets_validator,
)


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="KEYS_")

    http_port: int = 8103
    """The public listener's port: validate, and a customer's own keys."""
    admin_port: int = 9103
    """The admin listener's port: key administration and the internal API."""
    schema_name: str = "keys"
    """The service's PostgreSQL schema."""
    payment_failure_grace_s: float = 3 * 24 * 3600
    """How long keys keep working after a subscription invoice fails (Stripe retries meanwhile)."""
    key_environment: Literal["live", "test"] = "test"
    """Keys issued are `tg_live_…` or `tg_test_…`."""
    hash_secret: SecretStr
    """The HMAC secret keys are stored under (only the HMAC is stored). To rotate it, put
    the old one in `PREVIOUS_HASH_SECRETS` (docs/security.md)."""
    previous_hash_secrets: SecretStr | None = None
    """Hash secrets rotated out, comma-separated: a key still under one works, and is moved
    to `HASH_SECRET` the first time it is used. Drop one once `GET /v1/admin/hash-secrets`
    shows no live key under it."""
    delivery_keys: SecretStr
    """Fernet keys, comma-separated, shared with the notifier: the first seals a new key's
    plaintext until it is emailed; any of them opens."""
    gateway_tokens: SecretStr | None = None
    """Named tokens of the API gateways allowed to say which route, method and status a
    validated call was (what meters bill on); unset, any caller may."""
    validate_max_waiting: int = Field(default=10_000, ge=1)
    """Consuming validations waiting for their batch, at most; more are answered 503 with
    `Retry-After` at once, not after a wait their caller has given up on."""

    _secrets = secret_validator("hash_secret")
    _previous = secrets_validator("previous_hash_secrets")
    _gateways = named_tokens_validator("gateway_tokens")
    _fernet = fernet_keys_validator("delivery_keys")
