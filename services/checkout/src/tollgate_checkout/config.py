from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from tollgate_shared.settings import ServiceSettings, secret_validator

from .domain import DEFAULT_PLANS_PATH


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CHECKOUT_")

    http_port: int = 8101
    schema_name: str = "checkout"
    stripe_api_key: SecretStr
    stripe_api_base: str = "https://api.stripe.com"
    stripe_webhook_secret: SecretStr
    webhook_tolerance_s: int = 300
    plans_file: Path = DEFAULT_PLANS_PATH
    success_url: str = "http://127.0.0.1:8101/checkout/success?session_id={CHECKOUT_SESSION_ID}"
    cancel_url: str = "http://127.0.0.1:8101/checkout/cancelled"

    _secrets = secret_validator("stripe_api_key", "stripe_webhook_secret")
