"""SIGKILL a real ledger process while it burns usage from Kafka: after a restart every
unit is booked exactly once (offsets and entries commit together), including records the
keys service re-published."""

import asyncio
import secrets
from typing import Any
from uuid import uuid4

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from tollgate_devstack.crashable import CrashableService
from tollgate_devstack.processes import free_port
from tollgate_devstack.stack import STRIPE_API_KEY
from tollgate_ledger.domain import customer_credits, customer_overdrawn
from tollgate_shared.contracts import UsageRecorded
from tollgate_shared.contracts.topics import PAYMENTS_EVENTS, USAGE_RECORDED

from .helpers import purchase


class Ledger(CrashableService):
    """A ledger process of its own: own schema and consumer groups."""

    def __init__(self, stack: dict[str, Any]) -> None:
        self.tag = secrets.token_hex(4)
        self.schema, self.database_url = f"ledger_crash_{self.tag}", stack["database_url"]
        env = {
            "LEDGER_DATABASE_URL": stack["database_url"],
            "LEDGER_KAFKA_BOOTSTRAP_SERVERS": stack["kafka"],
            "LEDGER_HTTP_PORT": str(free_port()),
            "LEDGER_SCHEMA_NAME": self.schema,
            "LEDGER_GROUP_ID": f"ledger-crash-{self.tag}",
            "LEDGER_ADMIN_TOKEN": secrets.token_urlsafe(16),
            "LEDGER_STRIPE_API_KEY": STRIPE_API_KEY,
            "LEDGER_STRIPE_API_BASE": stack["stripe"],
            "LEDGER_USAGE_BATCH_MAX_RECORDS": "50",
        }
        super().__init__(stack, f"ledger-crash-{self.tag}", "tollgate_ledger", env)

    async def booked(self, account: str) -> tuple[int, int]:
        """(credits left, units of usage booked) for the account."""
        conn = await asyncpg.connect(self.database_url, server_settings={"search_path": self.schema})
        try:
            credits = await conn.fetchval(
                "SELECT credits_posted - debits_posted FROM balances WHERE account_id = $1",
                customer_credits(account).id,
            )
            used = await conn.fetchval(
                "SELECT coalesce(sum(p.amount), 0) FROM postings p JOIN journal_transactions t ON t.id = p.tx_id "
                "WHERE t.kind = 'usage' AND p.account_id = ANY($1::text[]) AND p.amount > 0",
                [customer_credits(account).id, customer_overdrawn(account).id],
            )
        except asyncpg.UndefinedTableError:
            return 0, 0
        finally:
            await conn.close()
        return credits or 0, used

    async def drop(self) -> None:
        conn = await asyncpg.connect(self.database_url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        finally:
            await conn.close()


async def produce(kafka: str, account: str, n: int, credits: int) -> int:
    """A purchase, then n usage records of one key, the last tenth sent twice (re-published)."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka, enable_idempotence=True)
    await producer.start()
    try:
        fact = purchase(account, credits)
        await producer.send_and_wait(PAYMENTS_EVENTS.name, fact.model_dump_json().encode(), key=account.encode())
        key, units = uuid4(), 0
        records = []
        for i in range(n):
            units += 1 + i % 3
            records.append(
                UsageRecorded(
                    key_id=key,
                    account_id=account,
                    plan="pro",
                    billing="prepaid",
                    units=1 + i % 3,
                    key_units_total=units,
                )
            )
        for r in records + records[-n // 10 :]:
            await producer.send(USAGE_RECORDED.name, r.model_dump_json().encode(), key=account.encode())
        await producer.flush()
        return units
    finally:
        await producer.stop()


@pytest.mark.parametrize("point", ["tx_consumer.after_commit", "random"])
async def test_sigkill_while_burning_books_every_unit_exactly_once(stack: dict[str, Any], point: str) -> None:
    ledger, account = Ledger(stack), f"cus_crash_{secrets.token_hex(4)}"
    try:
        expected = await produce(stack["kafka"], account, 400, credits=500)
        if point == "random":
            ledger.start()
            for _ in range(600):  # kill mid-stream, as soon as some but not all usage is in
                if 0 < (await ledger.booked(account))[1] < expected:
                    break
                await asyncio.sleep(0.02)
        else:
            ledger.start(pause_at=f"{point}:{account}")  # committed in PostgreSQL, not yet in Kafka
            await ledger.wait_for_log("paused at fault point")
        ledger.kill()
        ledger.start()
        for _ in range(600):
            _, used = await ledger.booked(account)
            if used >= expected:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # anything booked twice would show up now
        assert await ledger.booked(account) == (0, expected)  # 500 credits burned, the rest overdrawn
    finally:
        ledger.kill()
        await ledger.drop()
