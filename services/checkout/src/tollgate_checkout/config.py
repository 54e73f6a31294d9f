from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from tollgate_shared.settings import KeysAccess, secret_validator

from .domain import DEFAULT_PLANS_PATH


class Settings(KeysAccess):
    model_config = SettingsConfigDict(env_prefix="CHECKOUT_")

    http_port: int = 8101
    admin_port: int = 9101
    schema_name: str = "checkout"
    stripe_api_key: SecretStr
    stripe_api_base: str = "https://api.stripe.com"
    # One or more of the endpoint's signing secrets, comma-separated: during a rotation
    # Stripe signs with the new and the old, and either is accepted.
    stripe_webhook_secret: SecretStr
    webhook_tolerance_s: int = Field(default=300, ge=1)
    # A Stripe event is a few kB; anything near this is not one, and is refused unread.
    webhook_max_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)  # the webhook's, for every route
    # Anonymous checkouts an hour (each creates a Stripe customer), per client address
    # and per email.
    checkouts_per_address_per_hour: int = Field(default=30, ge=1)
    checkouts_per_email_per_hour: int = Field(default=5, ge=1)
    # Proxies in front of checkout that append to X-Forwarded-For (an ingress: 1). 0: the
    # peer's address is the client's.
    trusted_proxies: int = Field(default=0, ge=0)
    plans_file: Path = DEFAULT_PLANS_PATH
    success_url: str = "http://127.0.0.1:8101/checkout/success?session_id={CHECKOUT_SESSION_ID}"
    cancel_url: str = "http://127.0.0.1:8101/checkout/cancelled"

    _secrets = secret_validator("stripe_api_key", "stripe_webhook_secret")

    def webhook_secrets(self) -> tuple[str, ...]:
        return tuple(part.strip() for part in self.stripe_webhook_secret.get_secret_value().split(",") if part.strip())
