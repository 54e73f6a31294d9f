"""The one place that wires the notifier."""

from pathlib import Path

from cryptography.fernet import Fernet
from fastapi import FastAPI

from tollgate_shared.runtime import Runtime, ServiceSpec, service_app

from . import consumers
from .config import Settings
from .handlers import Deps
from .mailer import Mailer

SERVICE_DIR = Path(__file__).resolve().parents[2]
SPEC = ServiceSpec("notifier", "Tollgate notifier", subscriptions=consumers.SUBSCRIPTIONS)


def consumer_deps(settings: Settings) -> Deps:
    mailer = Mailer(
        settings.smtp_host,
        settings.smtp_port,
        settings.mail_from,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        starttls=settings.smtp_starttls,
    )
    delivery = Fernet(settings.delivery_key.get_secret_value())
    return Deps(mailer, delivery, settings.templates_dir, settings.customer_portal_url)


def build_app(settings: Settings) -> FastAPI:
    return service_app(Runtime(SPEC, settings, SERVICE_DIR, consumer_deps(settings)))
