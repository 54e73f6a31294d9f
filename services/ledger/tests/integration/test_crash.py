"""SIGKILL a real ledger process while it burns usage from Kafka: after a restart every
unit is booked exactly once (offsets and entries commit together), including records the
keys service re-published."""

import secrets
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from tollgate_devstack.crashable import CrashableService
from tollgate_devstack.demo import eventually
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
            "LEDGER_ADMIN_PORT": str(free_port()),
            "LEDGER_KEYS_TOKEN": secrets.token_urlsafe(24),
            "LEDGER_STRIPE_API_KEY": STRIPE_API_KEY,
            "LEDGER_STRIPE_API_BASE": stack["stripe"],
            "LEDGER_CONSUMER_MAX_RECORDS": "50",
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


async def produce(kafka: str, account: str, n: int, credits: int) -> tuple[UUID, int]:
    """A purchase, then n usage records of one key, the last tenth sent twice (re-published).
    Returns the key and the units it used."""
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
        return key, units
    finally:
        await producer.stop()


async def marker(kafka: str, account: str, key: UUID, after: int) -> None:
    """One more unit after everything else of the account: once it is booked, so is all that
    came before it on the account's partition, including anything that would be booked twice."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka, enable_idempotence=True)
    await producer.start()
    try:
        record = UsageRecorded(
            key_id=key, account_id=account, plan="pro", billing="prepaid", units=1, key_units_total=after + 1
        )
        await producer.send_and_wait(USAGE_RECORDED.name, record.model_dump_json().encode(), key=account.encode())
    finally:
        await producer.stop()


@pytest.mark.parametrize("point", ["consumer.after_commit", "mid-stream"])
async def test_sigkill_while_burning_books_every_unit_exactly_once(stack: dict[str, Any], point: str) -> None:
    ledger, account = Ledger(stack), f"cus_crash_{secrets.token_hex(4)}"
    try:
        key, expected = await produce(stack["kafka"], account, 400, credits=500)
        if point == "mid-stream":
            ledger.start()
            # Kill as soon as some usage is in.
            await eventually("some usage booked", lambda: ledger.booked(account), until=lambda b: b[1] > 0, every=0.02)
        else:
            # A usage batch of the account committed in PostgreSQL, not yet in Kafka.
            ledger.start(pause_at=f"{point}:{USAGE_RECORDED.name}:{account}")
            await ledger.wait_for_log("paused at fault point")
        ledger.kill()
        assert 0 < (await ledger.booked(account))[1] < expected, "the kill did not land mid-stream"
        ledger.start()
        await marker(stack["kafka"], account, key, after=expected)
        await eventually("the marker booked", lambda: ledger.booked(account), 60, until=lambda b: b[1] > expected)
        assert await ledger.booked(account) == (0, expected + 1)  # 500 credits burned, the rest overdrawn
    finally:
        ledger.kill()
        await ledger.drop()
