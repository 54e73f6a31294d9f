"""SIGKILL usage-sync at each point between counting and reporting; Stripe still gets each
window's value exactly once (same identifier, same value), and nothing is counted twice."""

import json
import secrets
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from tollgate_devstack.crashable import CrashableService
from tollgate_devstack.demo import eventually
from tollgate_devstack.processes import free_port
from tollgate_devstack.stack import STRIPE_API_KEY
from tollgate_shared.contracts import UsageRecorded
from tollgate_shared.contracts.topics import USAGE_RECORDED


class Instance(CrashableService):
    """One usage-sync process of its own: own schema, consumer group and Stripe meter."""

    def __init__(self, stack: dict[str, Any], tmp: Path) -> None:
        self.tag = secrets.token_hex(4)
        self.route = f"/crash/{self.tag}"
        meters = tmp / "meters.json"
        meters.write_text(
            json.dumps(
                {
                    "meters": [
                        {
                            "name": f"crash_calls_{self.tag}",  # its own identifiers, apart from the stack's usage-sync
                            "stripe_event_name": f"crash_{self.tag}",
                            "aggregation": "sum",
                            "filter": {"billing": "metered", "route": self.route},
                        }
                    ]
                }
            )
        )
        env = {
            "USAGE_SYNC_DATABASE_URL": stack["database_url"],
            "USAGE_SYNC_KAFKA_BOOTSTRAP_SERVERS": stack["kafka"],
            "USAGE_SYNC_HTTP_PORT": str(free_port()),
            "USAGE_SYNC_ADMIN_PORT": str(free_port()),
            "USAGE_SYNC_KEYS_TOKEN": secrets.token_urlsafe(24),
            "USAGE_SYNC_SCHEMA_NAME": f"crash_{self.tag}",
            "USAGE_SYNC_GROUP_ID": f"crash-{self.tag}",
            "USAGE_SYNC_METERS_FILE": str(meters),
            "USAGE_SYNC_STRIPE_API_KEY": STRIPE_API_KEY,
            "USAGE_SYNC_STRIPE_API_BASE": stack["stripe"],
            "USAGE_SYNC_WINDOW_SECONDS": "2",
            "USAGE_SYNC_GRACE_SECONDS": "1",
            "USAGE_SYNC_TICK_SECONDS": "0.3",
            "USAGE_SYNC_REPORT_LEASE_S": "2",
        }
        super().__init__(stack, f"usage-sync-crash-{self.tag}", "tollgate_usage_sync", env)
        self.database_url = stack["database_url"]

    async def windows(self) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.database_url)
        try:
            return await conn.fetch(f'SELECT * FROM "crash_{self.tag}".usage_windows')
        finally:
            await conn.close()


async def produce(kafka: str, records: list[UsageRecorded]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka, enable_idempotence=True)
    await producer.start()
    try:
        for r in records:
            await producer.send_and_wait(USAGE_RECORDED.name, r.model_dump_json().encode(), key=r.account_id.encode())
    finally:
        await producer.stop()


async def stripe_saw(stack: dict[str, Any], instance: Instance) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What Stripe keeps (one per identifier) and every request it got, for this instance's meter."""
    async with httpx.AsyncClient() as http:
        r = (await http.get(f"{stack['stripe']}/_emulator/meter_events")).json()
    name = f"crash_{instance.tag}"
    return [e for e in r["events"] if e["event_name"] == name], [e for e in r["requests"] if e["event_name"] == name]


@pytest.mark.parametrize("point", ["consumer.after_commit", "reporter.before_send", "reporter.after_send"])
async def test_sigkill_at_any_point_reports_each_window_exactly_once(
    stack: dict[str, Any], tmp_path: Path, point: str
) -> None:
    instance = Instance(stack, tmp_path)
    account, key = f"cus_crash_{instance.tag}", uuid4()
    records = [
        UsageRecorded(
            key_id=key,
            account_id=account,
            plan="metered",
            billing="metered",
            units=units,
            key_units_total=total,
            route=instance.route,
        )
        for units, total in ((5, 5), (7, 12))
    ]
    await produce(stack["kafka"], records)
    instance.start(pause_at=f"{point}:{account}")  # pause only where this account's usage is
    try:
        await instance.wait_for_log(point)
        if point == "consumer.after_commit":
            (counted,) = await instance.windows()  # committed with its offsets, Kafka not yet told
            assert counted["value"] == 12
        instance.kill()  # SIGKILL, exactly at the point
        instance.start()
        windows = await eventually(
            "every window confirmed",
            instance.windows,
            30,
            until=lambda ws: bool(ws) and all(w["state"] == "confirmed" for w in ws),
            every=0.1,
        )
    finally:
        instance.kill()
    assert sum(w["value"] for w in windows) == 12, "counted twice or lost after the crash"
    events, sent = await stripe_saw(stack, instance)
    assert sorted(e["identifier"] for e in events) == sorted(w["identifier"] for w in windows)
    assert sum(int(e["payload"]["value"]) for e in events) == 12
    # A re-send after the crash carries the same identifier and the same value.
    for request in sent:
        (original,) = [e for e in events if e["identifier"] == request["identifier"]]
        assert request["payload"]["value"] == original["payload"]["value"]
