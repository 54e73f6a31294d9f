from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from tollgate_shared.settings import KeysAccess, ServiceSettings, secret_validator


class Settings(KeysAccess):
    model_config = SettingsConfigDict(env_prefix="LEDGER_")

    http_port: int = 8102
    admin_port: int = 9102
    schema_name: str = "ledger"
    # Alerts fire when a customer's available credits fall below this (per-account overrides).
    low_balance_threshold: int = Field(default=100, ge=0)
    # How often holds and credit grants past their deadline are expired.
    sweep_interval_s: float = Field(default=5.0, gt=0)


class BookSettings(ServiceSettings):
    """What the finance CLI needs to read the book: the database, nothing else."""

    model_config = SettingsConfigDict(env_prefix="LEDGER_")

    schema_name: str = "ledger"


class ReconcileSettings(BookSettings):
    """What `cli reconcile` needs besides the book: the Stripe account to compare it with."""

    stripe_api_key: SecretStr
    stripe_api_base: str = "https://api.stripe.com"

    _secrets = secret_validator("stripe_api_key")
