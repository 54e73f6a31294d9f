"""Warm a just-started Kafka broker's produce path before a benchmark times anything.

A broker's first minutes of produce requests run partly interpreted while its JIT
compiles them. Beside a held keys service at 1,000 validations/s, a just-restarted
broker took 2.26-2.96 s of CPU in its first 10 s round and 0.94-1.69 s in its fifth
(three restarts, 2026-12-04); on two cores shared with the service and PostgreSQL,
that CPU lands in the service's tail, so the first run on a new stack measured a p99
1.1-2.6 ms higher than the run after it in four pairs of four (2026-12-03).

The warm-up sends what the keys service's outbox relay sends (idempotent, acks=all,
one record batch per partition every 50 ms, usage-event-sized records with the relay's
headers) to a scratch topic, so neither the bench schema's outbox nor any real topic
sees it. After it, the first round took 1.14-1.91 s (four restarts): about half the
excess is gone. The rest was the JIT's optimizing (C2) compilations, which ran on for
minutes: with the warm-up, the first bench-keys run on a new broker still had a p99
about 1.5 ms over the run after it (2026-12-07). Sending without the relay's pacing
made that worse, not better; the dev stack's broker now runs the C1 compiler only
(infra.py), and the warm-up stays for the half it does remove.
"""

import asyncio
import os
import secrets
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

from aiokafka.admin import NewTopic

from tollgate_shared.bus import kafka_admin
from tollgate_shared.contracts import UsageRecorded
from tollgate_shared.outbox import outbox_producer, relay_record

WARM_UNTIL_AGE_S = 120.0
RELAY_PERIOD_S = 0.05  # the relay's idle sleep between batches
SCRATCH_PREFIX = "bench.kafka-warmup."


def process_age_s(pid: int) -> float:
    """Seconds since `pid` started, from /proc (field 22 of stat: start time in clock
    ticks after boot)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
    return float(Path("/proc/uptime").read_text().split()[0]) - started


async def warm_young_broker(bootstrap: str, broker_pid: int | None, until_age_s: float = WARM_UNTIL_AGE_S) -> float:
    """Warm the broker until it is `until_age_s` old, if it is younger; returns the
    seconds spent (0 for a broker already that old, as on every run after the first)."""
    if broker_pid is None:
        return 0.0
    seconds = until_age_s - process_age_s(broker_pid)
    if seconds <= 0:
        return 0.0
    print(f"bench-keys: warming Kafka's produce path for {seconds:.0f} s (the broker just started)", flush=True)
    await warm_produce_path(bootstrap, seconds)
    return seconds


def _record() -> dict[str, Any]:
    event = UsageRecorded(
        key_id=uuid4(), account_id="cus_bench0000", plan="metered", billing="metered", units=1, key_units_total=1
    )
    return relay_record(event.account_id.encode(), event.model_dump_json(), event.event_type, event.event_id)


async def warm_produce_path(bootstrap: str, seconds: float, rate: float = 1000, partitions: int = 6) -> int:
    """Produce `rate` records/s for `seconds` to a fresh scratch topic; returns how many
    Kafka acknowledged.

    Earlier scratch topics are deleted first, and this one is left for the next warm-up
    to delete: Kafka removes a deleted topic's files a minute later (file.delete.delay.ms),
    and when this deleted its own topic at the end, that landed in PostgreSQL alone's
    phase at 1,000/s, whose p99 went to 16.7-38.7 ms in four runs against 6.5-8.1 without
    the warm-up (2026-12-04). Deleted at the start, the files go within the warm-up."""
    topic = f"{SCRATCH_PREFIX}{secrets.token_hex(4)}"
    async with kafka_admin(bootstrap) as admin:
        if stale := [name for name in await admin.list_topics() if name.startswith(SCRATCH_PREFIX)]:
            await admin.delete_topics(stale)
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    producer = outbox_producer(bootstrap, "bench-kafka-warmup")
    await producer.start()
    per_period = round(rate * RELAY_PERIOD_S)
    shares = [per_period // partitions + (p < per_period % partitions) for p in range(partitions)]
    sent = 0
    try:
        start = time.monotonic()
        for period in range(int(seconds / RELAY_PERIOD_S)):
            await asyncio.sleep(max(0.0, start + period * RELAY_PERIOD_S - time.monotonic()))
            acks = []
            for partition, share in enumerate(shares):
                batch = producer.create_batch()
                for _ in range(share):
                    batch.append(**_record())
                acks.append(await producer.send_batch(batch, topic, partition=partition))
            await asyncio.gather(*acks)
            sent += per_period
    finally:
        await producer.stop()
    return sent
