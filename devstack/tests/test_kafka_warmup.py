"""The bench's broker warm-up: it warms only a young broker, produces at the relay's
rate, and replaces the previous scratch topic. Against the test stack's real Kafka."""

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator

import pytest

from tollgate_devstack.bench.kafka_warmup import (
    SCRATCH_PREFIX,
    process_age_s,
    warm_produce_path,
    warm_young_broker,
)
from tollgate_shared.bus import kafka_admin


async def _scratch_topics(bootstrap: str) -> set[str]:
    async with kafka_admin(bootstrap) as admin:
        return {t for t in await admin.list_topics() if t.startswith(SCRATCH_PREFIX)}


async def _settled_scratch_topics(bootstrap: str, timeout_s: float = 15) -> set[str]:
    """The scratch topics once at most one is left: deletion reaches the metadata a
    moment after the broker accepts it."""
    deadline = time.monotonic() + timeout_s
    while len(topics := await _scratch_topics(bootstrap)) > 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    return topics


@pytest.fixture(autouse=True)
async def _no_scratch_topic_left(kafka_bootstrap: str) -> AsyncIterator[None]:
    yield
    if left := await _scratch_topics(kafka_bootstrap):
        async with kafka_admin(kafka_bootstrap) as admin:
            await admin.delete_topics(list(left))


def test_a_process_age_counts_from_its_start() -> None:
    with subprocess.Popen(["sleep", "30"]) as young:
        try:
            assert 0 <= process_age_s(young.pid) < 5
            assert process_age_s(1) > process_age_s(young.pid)
        finally:
            young.kill()


async def test_the_warm_up_produces_at_the_relay_rate_and_replaces_the_last_scratch_topic(
    kafka_bootstrap: str,
) -> None:
    started = time.monotonic()
    assert await warm_produce_path(kafka_bootstrap, seconds=1.0, rate=1000) == 1000
    assert time.monotonic() - started >= 0.95  # paced, not a burst
    (first,) = await _settled_scratch_topics(kafka_bootstrap)

    assert await warm_produce_path(kafka_bootstrap, seconds=0.5, rate=1000) == 500
    (second,) = await _settled_scratch_topics(kafka_bootstrap)
    assert second != first


async def test_only_a_broker_younger_than_the_threshold_is_warmed(kafka_bootstrap: str) -> None:
    broker = await asyncio.create_subprocess_exec("sleep", "30")  # stands in for a broker started just now
    try:
        before = await _scratch_topics(kafka_bootstrap)
        assert await warm_young_broker(kafka_bootstrap, broker.pid, until_age_s=0.0) == 0.0
        assert await _scratch_topics(kafka_bootstrap) <= before  # nothing produced
        spent = await warm_young_broker(kafka_bootstrap, broker.pid, until_age_s=1.5)
        assert 0.5 < spent <= 1.5
        assert len(await _settled_scratch_topics(kafka_bootstrap)) == 1
    finally:
        broker.kill()
        await broker.wait()
    assert await warm_young_broker(kafka_bootstrap, None) == 0.0
