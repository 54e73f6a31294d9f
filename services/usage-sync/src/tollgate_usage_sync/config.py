from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from tollgate_shared.settings import KeysAccess, ServiceSettings, secret_validator

from .domain import DEFAULT_METERS_PATH


class WindowSettings(ServiceSettings):
    """The database, and where meters are defined: what `cli backfill` needs."""

    model_config = SettingsConfigDict(env_prefix="USAGE_SYNC_")

    schema_name: str = "usage_sync"
    meters_file: Path = DEFAULT_METERS_PATH


class StripeSettings(WindowSettings):
    """Besides the windows, the Stripe account they are reported to (`cli reconcile`)."""

    stripe_api_key: SecretStr
    stripe_api_base: str = "https://api.stripe.com"
    # The ledger's admin listener, and an operator's token for it (reconcile reads usage there).
    ledger_url: str = "http://127.0.0.1:9102"
    ledger_token: SecretStr = SecretStr("")

    _secrets = secret_validator("stripe_api_key")


class Settings(StripeSettings, KeysAccess):
    model_config = SettingsConfigDict(env_prefix="USAGE_SYNC_")

    http_port: int = 8105
    admin_port: int = 9105
    window_seconds: int = Field(default=3600, ge=1)
    grace_seconds: int = Field(default=300, ge=0)
    tick_seconds: float = Field(default=5.0, gt=0)
    # Meter events: Stripe allows 1,000 calls/s in live mode, and in test mode counts
    # them against the basic limit of 25/s; the default stays under both.
    stripe_rate_per_s: float = Field(default=20.0, gt=0)
    stripe_burst: int = Field(default=20, ge=1)
    # Calls in flight at once, each for a different customer and meter. Reports go at
    # about min(stripe_rate_per_s, report_concurrency / Stripe's latency); each lane
    # holds a database connection (db_pool_max) while it sends.
    report_concurrency: int = Field(default=4, ge=1)
    # How long a window stays leased to the replica sending it; after a crash it is re-sent then.
    report_lease_s: float = Field(default=60.0, gt=0)
