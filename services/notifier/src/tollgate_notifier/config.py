from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from tollgate_shared.settings import KeysAccess, fernet_keys_validator

from .templates import TEMPLATES


class Settings(KeysAccess):
    model_config = SettingsConfigDict(env_prefix="NOTIFIER_")

    http_port: int = 8104
    """The public listener's port: health only."""
    admin_port: int = 9104
    """The admin listener's port: health and `/metrics`."""
    schema_name: str = "notifier"
    """The service's PostgreSQL schema."""
    smtp_host: str = "127.0.0.1"
    """The mail relay."""
    smtp_port: int = 2525
    """The mail relay's port."""
    smtp_username: str | None = None
    """The relay's user, if it asks for one."""
    smtp_password: SecretStr | None = None
    """That user's password."""
    smtp_starttls: bool = False
    """Upgrade the SMTP connection with STARTTLS."""
    mail_from: str = "Tollgate <no-reply@tollgate.local>"
    """The From of every email."""
    customer_portal_url: str = "http://127.0.0.1:8101/portal"
    """The customer portal, linked from every email."""
    templates_dir: Path = TEMPLATES
    """Email templates (one `.txt` per template, subject on the first line)."""
    delivery_keys: SecretStr
    """The keys service's delivery keys (comma-separated Fernet keys): new keys arrive sealed."""

    _fernet = fernet_keys_validator("delivery_keys")
