"""The life of one service process: migrate, pool, outbox relay, consumers, two listeners.

A service serves two HTTP listeners from one process: the public one (its public and
customer routes, health) and the admin one (operator and internal routes, health,
/metrics), which the public Kubernetes Service does not expose. PostgreSQL is needed to
start; Kafka is not: the relay and the consumers connect in the background and retry,
and the outbox holds what waits for Kafka meanwhile, so a Kafka outage never takes a
route that only needs PostgreSQL out of service.
"""

import asyncio
import contextlib
import gc
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import uvicorn
from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, FastAPI
from starlette.types import ASGIApp

from . import audit, db
from .consumer import Subscription, TransactionalConsumer
from .contracts import Topic
from .health import health_router, kafka_check, metrics_router, postgres_check
from .http import ERRORS, RequestGuard, install_error_handlers
from .logging import configure_logging, get_logger
from .outbox import OutboxRelay, outbox_producer
from .settings import ServiceSettings

log = get_logger(__name__)
Hook = Callable[[], Awaitable[None]]
Work = Callable[[], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class ServiceSpec:
    """What a service is on the wire: what it consumes and what it publishes. The runtime
    runs exactly these subscriptions, the relay refuses to publish anything else, and the
    AsyncAPI document is generated from them."""

    name: str
    title: str
    subscriptions: tuple[Subscription[Any, Any], ...] = ()
    publishes: tuple[Topic, ...] = ()


@dataclass
class Runtime:
    """Holds the connections a service uses; created before start, filled on start."""

    spec: ServiceSpec
    settings: ServiceSettings
    schema_dir: Path
    deps: Any = None  # what the subscriptions' handlers are given besides their batch
    relay: OutboxRelay | None = field(default=None, init=False)
    consumers: list[TransactionalConsumer[Any, Any]] = field(default_factory=list, init=False)
    _pool: asyncpg.Pool | None = field(default=None, init=False)
    _producer: AIOKafkaProducer | None = field(default=None, init=False)
    _kafka: asyncio.Task[None] | None = field(default=None, init=False)

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("runtime not started")
        return self._pool

    @property
    def schema(self) -> str:
        return self.settings.schema_name

    def group_id(self, subscription: Subscription[Any, Any]) -> str:
        return f"{self.settings.group_id or self.spec.name}.{subscription.name}"

    async def start(self) -> None:
        s = self.settings
        if s.migrate_on_start:
            applied = await migrate(s, self.schema_dir)
            if applied:
                log.info("migrations applied", names=applied)
        self._pool = await db.connect(s)
        self._kafka = asyncio.create_task(self._connect_kafka(), name="kafka-connect")

    async def _connect_kafka(self) -> None:
        """The relay and the consumers, once Kafka answers: retried for as long as it takes."""
        s, delay = self.settings, 0.5
        while self._producer is None:
            producer = outbox_producer(
                s.kafka_bootstrap_servers, f"tollgate-{self.spec.name}-outbox", **s.kafka_options()
            )
            try:
                await producer.start()
                self._producer = producer
            except Exception as exc:
                await producer.stop()
                log.warning("kafka unavailable; the outbox keeps what waits", error=repr(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 15.0)
        assert self._pool is not None
        self.relay = OutboxRelay(
            self._pool,
            self._producer,
            topics=frozenset(t.name for t in self.spec.publishes),
            forget=frozenset(t.name for t in self.spec.publishes if not t.keep_published),
        )
        self.relay.start()
        for subscription in self.spec.subscriptions if s.consumers_enabled else ():
            consumer = TransactionalConsumer(
                subscription,
                self.deps,
                bootstrap_servers=s.kafka_bootstrap_servers,
                group_id=self.group_id(subscription),
                pool=self._pool,
                max_records=min(subscription.max_records, s.consumer_max_records or subscription.max_records),
                kafka_options=s.kafka_options(),
            )
            await _until_started(consumer)
            self.consumers.append(consumer)

    @property
    def producer(self) -> AIOKafkaProducer | None:
        return self._producer

    async def stop(self) -> None:
        if self._kafka:
            self._kafka.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._kafka
        for consumer in self.consumers:
            await consumer.stop()
        if self.relay:
            await self.relay.stop()
        if self._producer:
            await self._producer.stop()
        if self._pool:
            await self._pool.close()


async def _until_started(consumer: TransactionalConsumer[Any, Any]) -> None:
    delay = 0.5
    while True:
        try:
            await consumer.start()
            return
        except Exception as exc:
            await consumer.stop()
            log.warning("consumer cannot start yet", group=consumer.group_id, error=repr(exc), retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 15.0)


async def migrate(s: ServiceSettings, schema_dir: Path) -> list[str]:
    """The schema brought up to date as its owner, and the service's own role granted
    what it needs (when the service runs as a role of its own)."""
    owner_url = s.database_owner_url or s.database_url
    app_role = db.role_of(s.database_url) if s.database_owner_url else None
    return await db.migrate(owner_url, s.schema_name, schema_dir, ssl=s.database_ssl(), app_role=app_role)


@dataclass
class Service:
    """A service process: its runtime, its two apps, and what runs beside them."""

    runtime: Runtime
    public: ASGIApp
    admin: ASGIApp
    background: list[Work] = field(default_factory=list)
    on_start: list[Hook] = field(default_factory=list)
    on_stop: list[Hook] = field(default_factory=list)
    audit: "audit.AuditWriter | None" = None  # the admin listener's, for routes served in front of it

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        await self.runtime.start()
        for hook in self.on_start:
            await hook()
        tasks = [asyncio.create_task(work(), name=work.__name__) for work in self.background]
        _freeze_startup_heap()
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for hook in self.on_stop:
                await hook()
            await self.runtime.stop()


def service(
    runtime: Runtime,
    *,
    public: list[APIRouter],
    admin: list[APIRouter],
    background: list[Work] | None = None,
    on_start: list[Hook] | None = None,
    on_stop: list[Hook] | None = None,
    public_errors: dict[int | str, dict[str, Any]] | None = None,
) -> Service:
    """The service's two apps: public (and customer) routes, and operator and internal ones.
    `public_errors` documents the public app's errors where they are not JSON (pages)."""
    configure_logging(runtime.spec.name, runtime.settings.log_level)
    checks = {"postgres": postgres_check(lambda: runtime._pool)}
    extra = {"kafka": kafka_check(lambda: runtime.producer)}  # reported, never deciding readiness
    public_app = _app(runtime, f"{runtime.spec.title}", [health_router(checks, extra), *public], public_errors)
    admin_app = _app(runtime, f"{runtime.spec.title} (admin)", [health_router(checks, extra), metrics_router(), *admin])
    writer = audit.AuditWriter(lambda: runtime._pool)
    admin_app.add_middleware(audit.AuditLog, writer=writer)
    stop = [*(on_stop or []), writer.drain]
    return Service(runtime, public_app, admin_app, background or [], on_start or [], stop, writer)


def _app(
    runtime: Runtime, title: str, routers: list[APIRouter], errors: dict[int | str, dict[str, Any]] | None = None
) -> FastAPI:
    app = FastAPI(title=title, responses=errors or ERRORS)
    install_error_handlers(app)
    for router in routers:
        app.include_router(router)
    return app


def _freeze_startup_heap() -> None:
    """Leave what start-up built (modules, app, pool, clients) out of every later collection.

    A full collection walks every tracked object, and a started service holds tens of
    thousands that live as long as the process; each walk stops the event loop long
    enough to show in request latency. Frozen, they are never walked again; what
    requests allocate is collected as before. Garbage is collected first, not frozen."""
    gc.collect()
    gc.freeze()


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the process stops every listener on a signal (serve), not only the last one started


def serve(svc: Service, settings: ServiceSettings) -> None:
    from .write_coalescing import CoalescingHttpToolsProtocol

    def listener(app: ASGIApp, host: str, port: int) -> _Server:
        guarded = RequestGuard(app, max_body=settings.max_body_bytes, deadline_s=settings.request_deadline_s)
        config = uvicorn.Config(
            guarded,
            host=host,
            port=port,
            lifespan="off",
            log_config=None,
            access_log=False,
            # No service reads the client address, and none names its server software.
            proxy_headers=False,
            server_header=False,
            http=CoalescingHttpToolsProtocol,
        )
        return _Server(config)

    async def main() -> None:
        servers = [
            listener(svc.public, settings.http_host, settings.http_port),
            listener(svc.admin, settings.admin_host, settings.admin_port),
        ]

        def stop() -> None:
            for server in servers:
                server.should_exit = True

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        async with svc.running():
            log.info("service started", port=settings.http_port, admin_port=settings.admin_port)
            await asyncio.gather(*(s.serve() for s in servers))

    import uvloop

    uvloop.run(main())
