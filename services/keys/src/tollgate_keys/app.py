"""The one place that wires the keys service."""

from pathlib import Path

from tollgate_shared.auth import Tokens
from tollgate_shared.contracts.topics import KEYS_EVENTS, USAGE_RECORDED
from tollgate_shared.runtime import Runtime, Service, ServiceSpec, service
from tollgate_shared.settings import multi_fernet, secret_list

from . import admin_api, api, consumers
from .batcher import Batcher
from .config import Settings
from .fastpath import validate_route
from .handlers import KeySecrets

SCHEMA = Path(__file__).resolve().parent / "schema"  # migrations, functions, grants
PUBLISHES = (KEYS_EVENTS, USAGE_RECORDED)
SPEC = ServiceSpec("keys", "Tollgate keys", subscriptions=consumers.SUBSCRIPTIONS, publishes=PUBLISHES)


def key_secrets(settings: Settings) -> KeySecrets:
    return KeySecrets(
        environment=settings.key_environment,
        hash_secret=settings.hash_secret.get_secret_value().encode(),
        delivery=multi_fernet(settings.delivery_keys),
        previous_hash_secrets=tuple(s.encode() for s in secret_list(settings.previous_hash_secrets)),
    )


def consumer_deps(settings: Settings) -> consumers.Deps:
    return consumers.Deps(key_secrets(settings), settings.payment_failure_grace_s)


def build_app(settings: Settings) -> Service:
    deps = consumer_deps(settings)
    secrets = deps.secrets
    runtime = Runtime(SPEC, settings, SCHEMA, deps)
    batcher = Batcher(lambda: runtime.pool, max_waiting=settings.validate_max_waiting)
    validator = api.Validator(runtime, secrets, batcher, Tokens(settings.gateway_tokens))
    operators, internals = Tokens(settings.operator_tokens), Tokens(settings.internal_tokens)

    async def start() -> None:
        batcher.start()

    svc = service(
        runtime,
        public=[api.router(runtime, secrets, validator)],
        admin=[
            admin_api.router(runtime, secrets, operators, internals),
            admin_api.internal_router(runtime, secrets, internals),
            admin_api.deliveries_router(runtime, internals),
        ],
        on_start=[start],
        on_stop=[batcher.stop],
    )
    # Outermost, ahead of FastAPI's own middleware stack: on the hot path that stack cost
    # more than the validation it wrapped (see fastpath.py).
    svc.public = validate_route(svc.public, validator)
    return svc
