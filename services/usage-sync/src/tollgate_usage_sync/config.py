from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from tollgate_shared.settings import KeysAccess, ServiceSettings, secret_validator

from .domain import DEFAULT_METERS_PATH


class WindowSettings(ServiceSettings):
    """The database, and where meters are defined: what `cli backfill` needs."""

    model_config = SettingsConfigDict(env_prefix="USAGE_SYNC_")

    schema_name: str = "usage_sync"
    """The service's PostgreSQL schema."""
    meters_file: Path = DEFAULT_METERS_PATH
    """The meters (YAML): which usage is counted for which Stripe Billing Meter."""


class StripeSettings(WindowSettings):
    """Besides the windows, the Stripe account they are reported to (`cli reconcile`)."""

    stripe_api_key: SecretStr
    """Stripe's API key: meter events, invoice previews."""
    stripe_api_base: str = "https://api.stripe.com"
    """Stripe's API."""
    ledger_url: str = "http://127.0.0.1:9102"
    """The ledger's admin listener (`cli reconcile` reads burned usage there)."""
    ledger_token: SecretStr = SecretStr("")
    """An operator's token for the ledger (`cli reconcile`)."""

    _secrets = secret_validator("stripe_api_key")


class Settings(StripeSettings, KeysAccess):
    model_config = SettingsConfigDict(env_prefix="USAGE_SYNC_")

    http_port: int = 8105
    """The public listener's port: a customer's usage and upcoming invoice."""
    admin_port: int = 9105
    """The admin listener's port."""
    window_seconds: int = Field(default=3600, ge=1)
    """Usage is summed and reported to Stripe per window of this length."""
    grace_seconds: int = Field(default=300, ge=0)
    """A window is reported this long after it ends, so late usage still counts in it."""
    tick_seconds: float = Field(default=5.0, gt=0)
    """How often the reporter looks for windows to send."""
    stripe_rate_per_s: float = Field(default=20.0, gt=0)
    """Meter events per second at most: Stripe allows 1,000/s in live mode and counts them
    against the basic 25/s in test mode; the default stays under both."""
    stripe_burst: int = Field(default=20, ge=1)
    """Meter events sent at once before the rate applies."""
    report_concurrency: int = Field(default=4, ge=1)
    """Calls to Stripe in flight at once, each for a different customer and meter; each
    holds a database connection while it sends."""
    report_lease_s: float = Field(default=60.0, gt=0)
    """How long a window stays leased to the replica sending it; after a crash it is sent again then."""
