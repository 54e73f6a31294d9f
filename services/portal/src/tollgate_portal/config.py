from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from tollgate_shared.settings import KeysAccess, fernet_keys_validator, secret_validator


class Settings(KeysAccess):
    model_config = SettingsConfigDict(env_prefix="PORTAL_")

    http_port: int = 8106
    """The portal's pages (the public listener)."""
    admin_port: int = 9106
    """The admin listener: health and `/metrics`."""
    schema_name: str = "portal"
    """The portal's PostgreSQL schema."""
    public_url: str = "http://127.0.0.1:8106/portal"
    """Where customers reach the portal: every link it sends starts here."""
    cookie_secure: bool = True
    """Send the session cookie over HTTPS only. Off only on the local dev stack (plain HTTP)."""
    session_secret: SecretStr
    """Signs the session and CSRF cookies, so a forged one is refused before any lookup."""
    delivery_keys: SecretStr
    """The notifier's delivery keys (comma-separated Fernet keys): sign-in links travel sealed."""
    session_days: int = Field(default=14, ge=1, le=90)
    """How long a browser stays signed in without signing in again."""
    sign_in_link_minutes: int = Field(default=15, ge=1, le=60)
    """How long a sign-in link works (once)."""
    links_per_email_per_hour: int = Field(default=5, ge=1)
    """Sign-up and sign-in emails one address may be sent an hour."""
    links_per_address_per_hour: int = Field(default=30, ge=1)
    """Sign-up and sign-in requests one client address may make an hour."""
    trusted_proxies: int = Field(default=0, ge=0)
    """Proxies in front of the portal that append to `X-Forwarded-For` (behind an ingress: 1)."""
    ledger_url: str = "http://127.0.0.1:9102"
    """The ledger's admin listener (balances, grants, threshold)."""
    checkout_url: str = "http://127.0.0.1:9101"
    """Checkout's admin listener (purchases, top-ups, the Billing Portal)."""
    usage_sync_url: str = "http://127.0.0.1:9105"
    """usage-sync's admin listener (metered usage, the upcoming invoice)."""
    auto_recharge_daily_cap: int = Field(default=3, ge=1, le=24)
    """Auto-recharges one account may fire a day, at most (a customer may choose fewer)."""

    _secrets = secret_validator("session_secret")
    _fernet = fernet_keys_validator("delivery_keys")
