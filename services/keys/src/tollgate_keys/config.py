from typing import Literal

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from tollgate_shared.settings import ServiceSettings, secret_validator


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="KEYS_")

    http_port: int = 8103
    schema_name: str = "keys"
    # How long keys keep working after a subscription invoice fails (Stripe retries meanwhile).
    payment_failure_grace_s: float = 3 * 24 * 3600
    key_environment: Literal["live", "test"] = "test"
    hash_secret: SecretStr
    delivery_key: SecretStr  # Fernet key shared with the notifier, to carry new keys to the email
    admin_token: SecretStr

    _secrets = secret_validator("hash_secret", "delivery_key", "admin_token")
