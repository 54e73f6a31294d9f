"""The one place that wires the notifier."""

from pathlib import Path

from cryptography.fernet import Fernet
from fastapi import FastAPI

from tollgate_shared.runtime import Runtime, service_app

from . import consumers
from .config import Settings
from .handlers import NotifierDeps
from .mailer import Mailer

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def build_app(settings: Settings) -> FastAPI:
    runtime = Runtime("notifier", "notifier", settings, MIGRATIONS)
    mailer = Mailer(
        settings.smtp_host,
        settings.smtp_port,
        settings.mail_from,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        starttls=settings.smtp_starttls,
    )
    delivery = Fernet(settings.delivery_key.get_secret_value())
    consumers.register(
        runtime.broker,
        lambda: NotifierDeps(runtime.pool, mailer, delivery, settings.templates_dir, settings.customer_portal_url),
    )
    return service_app(runtime)
