from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from tollgate_shared.settings import KeysAccess, fernet_keys_validator

from .templates import TEMPLATES


class Settings(KeysAccess):
    model_config = SettingsConfigDict(env_prefix="NOTIFIER_")

    http_port: int = 8104
    admin_port: int = 9104
    schema_name: str = "notifier"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    mail_from: str = "Tollgate <no-reply@tollgate.local>"
    customer_portal_url: str = "http://127.0.0.1:8101/portal"
    templates_dir: Path = TEMPLATES
    # The keys service's delivery keys (comma-separated Fernet keys): new keys arrive sealed.
    delivery_keys: SecretStr

    _fernet = fernet_keys_validator("delivery_keys")
