from decimal import Decimal
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from tollgate_shared.settings import KeysAccess, secret_validator

from .domain import DEFAULT_PLANS_PATH
from .top_ups import TopUpRules


class Settings(KeysAccess):
    model_config = SettingsConfigDict(env_prefix="CHECKOUT_")

    http_port: int = 8101
    """The public listener's port: Checkout Sessions and Stripe's webhook."""
    admin_port: int = 9101
    """The admin listener's port: health and `/metrics`."""
    schema_name: str = "checkout"
    """The service's PostgreSQL schema."""
    stripe_api_key: SecretStr
    """Stripe's secret (or restricted) API key."""
    stripe_api_base: str = "https://api.stripe.com"
    """Stripe's API; the dev stack points it at its emulator."""
    stripe_webhook_secret: SecretStr
    """The webhook endpoint's signing secrets, comma-separated: during a rotation Stripe
    signs with the new and the old, and either is accepted."""
    webhook_tolerance_s: int = Field(default=300, ge=1)
    """How far a webhook's signed timestamp may be from now, either way."""
    webhook_max_bytes: int = Field(default=1024 * 1024, ge=1024)
    """A Stripe event is a few kB; a body over this is not one, and is refused unread."""
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    """A request body over this is refused with 413 (the webhook's cap, for every route)."""
    checkouts_per_address_per_hour: int = Field(default=30, ge=1)
    """Anonymous checkouts (each creates a Stripe customer) one client address may start an hour."""
    checkouts_per_email_per_hour: int = Field(default=5, ge=1)
    """Anonymous checkouts one email may start an hour."""
    trusted_proxies: int = Field(default=0, ge=0)
    """Proxies in front of checkout that append to `X-Forwarded-For` (behind an ingress: 1);
    0: the peer's address is the client's."""
    plans_file: Path = DEFAULT_PLANS_PATH
    """The plan catalog (JSON): what can be bought, its price, credits and features."""
    success_url: str = "http://127.0.0.1:8101/checkout/success?session_id={CHECKOUT_SESSION_ID}"
    """Where Stripe sends the customer after paying."""
    cancel_url: str = "http://127.0.0.1:8101/checkout/cancelled"
    """Where Stripe sends the customer who gives up."""
    portal_url: str = "http://127.0.0.1:8106/portal"
    """The customer portal: the only place the portal's purchases may return to."""
    top_up_credits_per_minor_unit: Decimal = Field(default=Decimal(1), gt=0)
    """Credits a top-up buys per minor unit of money (1: a cent buys a credit); also the
    rate for payments made outside Tollgate."""
    top_up_min_minor: int = Field(default=500, ge=1)
    """The smallest top-up, in minor units."""
    top_up_max_minor: int = Field(default=100_000, ge=1)
    """The largest top-up, in minor units."""
    top_up_daily_max_minor: int = Field(default=200_000, ge=1)
    """What one account may top up in a day, every way together."""

    def top_up_rules(self) -> TopUpRules:
        return TopUpRules(
            self.top_up_credits_per_minor_unit,
            self.top_up_min_minor,
            self.top_up_max_minor,
            self.top_up_daily_max_minor,
        )

    _secrets = secret_validator("stripe_api_key", "stripe_webhook_secret")

    def webhook_secrets(self) -> tuple[str, ...]:
        return tuple(part.strip() for part in self.stripe_webhook_secret.get_secret_value().split(",") if part.strip())
