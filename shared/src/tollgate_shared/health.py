"""/healthz, /readyz and /metrics for every service."""

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

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


def health_router(checks: dict[str, Check]) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz(response: Response) -> dict[str, object]:
        results = {name: await _safe(check) for name, check in checks.items()}
        ready = all(results.values())
        response.status_code = 200 if ready else 503
        return {"status": "ready" if ready else "not_ready", "checks": results}

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


async def _safe(check: Check) -> bool:
    try:
        return await asyncio.wait_for(check(), timeout=2.0)
    except Exception:
        return False
