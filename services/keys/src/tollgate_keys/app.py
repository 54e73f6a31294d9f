"""The one place that wires the keys service."""

from pathlib import Path

from cryptography.fernet import Fernet

from tollgate_shared.runtime import Runtime, service_app

from . import api, consumers
from .batcher import Batcher
from .config import Settings
from .fastpath import ValidateFastPath
from .handlers import KeySecrets

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def build_app(settings: Settings) -> ValidateFastPath:
    runtime = Runtime("keys", settings.schema_name, settings, MIGRATIONS)
    secrets = KeySecrets(
        environment=settings.key_environment,
        hash_secret=settings.hash_secret.get_secret_value().encode(),
        delivery=Fernet(settings.delivery_key.get_secret_value()),
    )
    consumers.register(runtime.broker, runtime, secrets, settings.payment_failure_grace_s)
    batcher = Batcher(lambda: runtime.pool)

    async def start() -> None:
        batcher.start()

    app = service_app(
        runtime,
        api.router(runtime, secrets, settings.admin_token.get_secret_value(), batcher),
        on_start=[start],
        on_stop=[batcher.stop],
    )
    # Outermost, ahead of FastAPI's own middleware stack: on the hot path that stack cost
    # more than the validation it wrapped (a profile under load; see fastpath.py).
    return ValidateFastPath(app, handle=lambda body: api.answer(body, runtime, secrets, batcher))
