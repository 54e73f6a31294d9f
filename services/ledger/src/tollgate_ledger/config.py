from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from tollgate_shared.settings import KeysAccess, ServiceSettings, secret_validator


class Settings(KeysAccess):
    model_config = SettingsConfigDict(env_prefix="LEDGER_")

    http_port: int = 8102
    """The public listener's port: a customer's own balances and usage."""
    admin_port: int = 9102
    """The admin listener's port: accounts, transfers, corrections, finance."""
    schema_name: str = "ledger"
    """The service's PostgreSQL schema."""
    low_balance_threshold: int = Field(default=100, ge=0)
    """Alerts fire when a customer's available credits fall below this (accounts may override it)."""
    paid_credits_valid_days: int | None = Field(default=None, ge=1)
    """Paid credits (packs, top-ups) expire this many days after payment, and their unused
    money is recognised as revenue from expiry; unset, they never expire."""
    sweep_interval_s: float = Field(default=5.0, gt=0)
    """How often holds and credit grants past their deadline are expired."""
    gl_codes_file: Path | None = None
    """Ledger accounts to general-ledger codes for the journal export (JSON rules, first
    match wins); unset, the bundled example mapping."""


class BookSettings(ServiceSettings):
    """What the finance CLI needs to read the book: the database, and the GL mapping."""

    model_config = SettingsConfigDict(env_prefix="LEDGER_")

    schema_name: str = "ledger"
    """The service's PostgreSQL schema."""
    gl_codes_file: Path | None = None
    """Ledger accounts to general-ledger codes for the journal export; unset, the bundled mapping."""


class ReconcileSettings(BookSettings):
    """What `cli reconcile` needs besides the book: the Stripe account to compare it with."""

    stripe_api_key: SecretStr
    """Stripe's API key, read-only use (`cli reconcile`)."""
    stripe_api_base: str = "https://api.stripe.com"
    """Stripe's API."""

    _secrets = secret_validator("stripe_api_key")
