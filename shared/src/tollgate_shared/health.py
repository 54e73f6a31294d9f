"""/healthz and /readyz for every listener, /metrics for the admin one."""

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

Check = Callable[[], Awaitable[bool]]


def postgres_check(pool: Callable[[], asyncpg.Pool | None]) -> Check:
    async def check() -> bool:
        p = pool()
        if p is None:
            return False
        async with p.acquire(timeout=1.0) as conn:
            return bool(await conn.fetchval("SELECT 1"))

    return check


def kafka_check(producer: Callable[[], AIOKafkaProducer | None]) -> Check:
    async def check() -> bool:
        p = producer()
        if p is None:
            return False
        await p.client.fetch_all_metadata()  # a round trip to the cluster, not a cached answer
        return True

    return check


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, bool]
    reported: dict[str, bool]


def health_router(checks: dict[str, Check], reported: dict[str, Check] | None = None) -> APIRouter:
    """`checks` decide readiness: what every route of the service needs (PostgreSQL).
    `reported` are shown but do not decide it: Kafka, which the outbox waits out."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    async def healthz() -> Health:
        """The process is alive."""
        return Health(status="ok")

    @router.get("/readyz", responses={503: {"model": Readiness, "description": "Not ready"}})
    async def readyz(response: Response) -> Readiness:
        """Ready when what every route needs answers."""
        results = {name: await _safe(check) for name, check in checks.items()}
        others = {name: await _safe(check) for name, check in (reported or {}).items()}
        ready = all(results.values())
        response.status_code = 200 if ready else 503
        return Readiness(status="ready" if ready else "not_ready", checks=results, reported=others)

    return router


def metrics_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


async def _safe(check: Check) -> bool:
    try:
        return await asyncio.wait_for(check(), timeout=2.0)
    except Exception:
        return False
