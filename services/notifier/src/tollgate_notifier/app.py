"""The one place that wires the notifier."""

from pathlib import Path

from tollgate_shared.runtime import Runtime, Service, ServiceSpec, service
from tollgate_shared.settings import multi_fernet

from . import consumers
from .config import Settings
from .handlers import Deps, forget_emailed_keys
from .keys_client import KeysClient
from .mailer import Mailer

SCHEMA = Path(__file__).resolve().parent / "schema"  # migrations, functions, grants
SPEC = ServiceSpec("notifier", "Tollgate notifier", subscriptions=consumers.SUBSCRIPTIONS)


def consumer_deps(settings: Settings, keys: KeysClient | None = None) -> Deps:
    mailer = Mailer(
        settings.smtp_host,
        settings.smtp_port,
        settings.mail_from,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        starttls=settings.smtp_starttls,
    )
    keys = keys or KeysClient(settings.keys_internal_url, settings.keys_token.get_secret_value())
    return Deps(
        mailer, keys, multi_fernet(settings.delivery_keys), settings.templates_dir, settings.customer_portal_url
    )


def build_app(settings: Settings) -> Service:
    keys = KeysClient(settings.keys_internal_url, settings.keys_token.get_secret_value())
    runtime = Runtime(SPEC, settings, SCHEMA, consumer_deps(settings, keys))

    async def forget_keys() -> None:
        await forget_emailed_keys(runtime.pool, keys)

    return service(runtime, public=[], admin=[], background=[forget_keys], on_stop=[keys.close])
