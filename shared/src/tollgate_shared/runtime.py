"""The life of one service process: migrate, pool, topics, outbox relay, consumers, HTTP app."""

import asyncio
import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, FastAPI
from starlette.types import ASGIApp

from . import db
from .bus import ensure_topics
from .consumer import Subscription, TransactionalConsumer
from .contracts import Topic
from .health import health_router, kafka_check, postgres_check
from .http import install_error_handlers
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
    service_dir: Path
    deps: Any = None  # what the subscriptions' handlers are given besides their batch
    relay: OutboxRelay | None = field(default=None, init=False)
    consumers: list[TransactionalConsumer[Any, Any]] = field(default_factory=list, init=False)
    _pool: asyncpg.Pool | None = field(default=None, init=False)
    _producer: AIOKafkaProducer | None = field(default=None, init=False)

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
        applied = await db.migrate(s.database_url, self.schema, self.service_dir)
        if applied:
            log.info("migrations applied", names=applied)
        self._pool = await db.create_pool(s.database_url, self.schema, min_size=s.db_pool_min, max_size=s.db_pool_max)
        await ensure_topics(s.kafka_bootstrap_servers, replicas=s.kafka_topic_replicas)
        self._producer = outbox_producer(s.kafka_bootstrap_servers, f"tollgate-{self.spec.name}-outbox")
        await self._producer.start()
        self.relay = OutboxRelay(self._pool, self._producer, topics=frozenset(t.name for t in self.spec.publishes))
        self.relay.start()
        for subscription in self.spec.subscriptions if s.consumers_enabled else ():
            consumer = TransactionalConsumer(
                subscription,
                self.deps,
                bootstrap_servers=s.kafka_bootstrap_servers,
                group_id=self.group_id(subscription),
                pool=self._pool,
                max_records=min(subscription.max_records, s.consumer_max_records or subscription.max_records),
            )
            await consumer.start()
            self.consumers.append(consumer)

    async def stop(self) -> None:
        for consumer in self.consumers:
            await consumer.stop()
        if self.relay:
            await self.relay.stop()
        if self._producer:
            await self._producer.stop()
        if self._pool:
            await self._pool.close()


def service_app(
    runtime: Runtime,
    *routers: APIRouter,
    background: list[Work] | None = None,
    on_start: list[Hook] | None = None,
    on_stop: list[Hook] | None = None,
) -> FastAPI:
    """A FastAPI app whose lifespan starts and stops the runtime and the service's own
    work: `background` coroutines run as tasks for the life of the process."""
    configure_logging(runtime.spec.name, runtime.settings.log_level)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        for hook in on_start or []:
            await hook()
        tasks = [asyncio.create_task(work(), name=work.__name__) for work in background or []]
        _freeze_startup_heap()
        log.info("service started", port=runtime.settings.http_port)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for hook in on_stop or []:
                await hook()
            await runtime.stop()

    app = FastAPI(title=runtime.spec.title, lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(
        health_router(
            {
                "postgres": postgres_check(lambda: runtime._pool),
                "kafka": kafka_check(lambda: runtime._producer),
            }
        )
    )
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


def serve(app: ASGIApp, settings: ServiceSettings) -> None:
    import uvicorn

    from .write_coalescing import CoalescingHttpToolsProtocol

    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        # No service reads the client address, and none names its server software.
        proxy_headers=False,
        server_header=False,
        http=CoalescingHttpToolsProtocol,
    )
