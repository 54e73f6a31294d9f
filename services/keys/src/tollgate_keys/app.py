"""The one place that wires the keys service."""

from pathlib import Path

from cryptography.fernet import Fernet

from tollgate_shared.contracts.topics import KEYS_EVENTS, USAGE_RECORDED
from tollgate_shared.runtime import Runtime, ServiceSpec, service_app

from . import admin_api, api, consumers
from .batcher import Batcher
from .config import Settings
from .fastpath import ValidateFastPath
from .handlers import KeySecrets

SERVICE_DIR = Path(__file__).resolve().parents[2]
PUBLISHES = (KEYS_EVENTS, USAGE_RECORDED)
SPEC = ServiceSpec("keys", "Tollgate keys", subscriptions=consumers.SUBSCRIPTIONS, publishes=PUBLISHES)


def key_secrets(settings: Settings) -> KeySecrets:
    return KeySecrets(
        environment=settings.key_environment,
        hash_secret=settings.hash_secret.get_secret_value().encode(),
        delivery=Fernet(settings.delivery_key.get_secret_value()),
    )


def consumer_deps(settings: Settings) -> consumers.Deps:
    return consumers.Deps(key_secrets(settings), settings.payment_failure_grace_s)


def build_app(settings: Settings) -> ValidateFastPath:
    deps = consumer_deps(settings)
    secrets = deps.secrets
    runtime = Runtime(SPEC, settings, SERVICE_DIR, deps)
    batcher = Batcher(lambda: runtime.pool)

    async def start() -> None:
        batcher.start()

    app = service_app(
        runtime,
        api.router(runtime, secrets, batcher),
        admin_api.router(runtime, secrets, settings.admin_token.get_secret_value()),
        on_start=[start],
        on_stop=[batcher.stop],
    )
    # Outermost, ahead of FastAPI's own middleware stack: on the hot path that stack cost
    # more than the validation it wrapped (see fastpath.py).
    return ValidateFastPath(app, handle=lambda body: api.answer(body, runtime, secrets, batcher))
