from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from tollgate_shared.settings import ServiceSettings, secret_validator
from tollgate_shared.tx_consumer import BATCH_RECORDS


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LEDGER_")

    http_port: int = 8102
    schema_name: str = "ledger"
    group_id: str = "ledger"
    usage_batch_max_records: int = Field(default=BATCH_RECORDS, ge=1)
    # Alerts fire when a customer's available credits fall below this (per-account overrides).
    low_balance_threshold: int = Field(default=100, ge=0)
    # How often holds and credit grants past their deadline are expired.
    sweep_interval_s: float = Field(default=5.0, gt=0)
    admin_token: SecretStr
    stripe_api_key: SecretStr
    stripe_api_base: str = "https://api.stripe.com"

    _secrets = secret_validator("admin_token", "stripe_api_key")
