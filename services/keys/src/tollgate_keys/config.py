from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from tollgate_shared.settings import ServiceSettings, fernet_keys_validator, named_tokens_validator, secret_validator


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="KEYS_")

    http_port: int = 8103
    admin_port: int = 9103
    schema_name: str = "keys"
    # How long keys keep working after a subscription invoice fails (Stripe retries meanwhile).
    payment_failure_grace_s: float = 3 * 24 * 3600
    key_environment: Literal["live", "test"] = "test"
    hash_secret: SecretStr
    # Fernet keys, comma-separated, shared with the notifier: the first seals a new key's
    # plaintext until the notifier has emailed it; any of them opens. Rotate by putting a
    # new key first, and dropping the old one once no delivery older than that waits.
    delivery_keys: SecretStr
    # Named tokens of the API gateways allowed to say which route, method and status a
    # validated call was (what meters bill on). None: any caller may.
    gateway_tokens: SecretStr | None = None
    # Consuming validations waiting for their batch, at most; more are answered 503 with
    # Retry-After at once, not after a wait their caller has given up on.
    validate_max_waiting: int = Field(default=10_000, ge=1)

    _secrets = secret_validator("hash_secret")
    _gateways = named_tokens_validator("gateway_tokens")
    _fernet = fernet_keys_validator("delivery_keys")
