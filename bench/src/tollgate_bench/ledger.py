"""`make bench-ledger`: usage burned from Kafka, transfers through the library API, and
in the same run the limit: COPY of the same rows into PostgreSQL.

  ledger.usage_burned_per_s      prepaid usage records consumed and burned (offsets in the
                                 same transaction, per-key dedup, one entry per account/hour)
  ledger.journal_tx_per_s        journal transactions written while burning
  ledger.lag_ms                  last record of a burst produced -> its burn committed
  ledger.transfers_per_s         independent two-posting transfers, batched Books
  ledger.limit_insert_rows_per_s COPY of one row per usage record into a plain table
"""

import argparse
import asyncio
import time
import uuid

import asyncpg

from tollgate_ledger.app import SCHEMA
from tollgate_ledger.book import Book
from tollgate_ledger.consumers import Deps, book_payments, book_usage
from tollgate_ledger.domain import Account
from tollgate_ledger.finance import verify
from tollgate_ledger.handlers import transfer_many
from tollgate_ledger.holds import Transfer
from tollgate_shared.contracts import Money, PaymentSucceeded, UsageIntake, parse_usage

from .common import (
    drop_schema,
    figure,
    fresh_schema,
    fresh_topic,
    infrastructure,
    machine,
    until_applied,
    usage_consumer,
)
from .usage import produce, records


async def seed_credits(pool: asyncpg.Pool, accounts: int, credits: int) -> None:
    facts = [
        PaymentSucceeded(
            account_id=f"cus_bench{a:05d}",
            customer_email="bench@example.com",
            plan="professional",
            product_name="Pro",
            credits=credits,
            amount=Money(amount_minor=2500, currency="usd"),
            checkout_session_id=f"cs_bench_{a}",
            payment_intent_id=f"pi_bench_{a}",
        )
        for a in range(accounts)
    ]
    async with pool.acquire() as conn, conn.transaction():
        await book_payments(Deps(low_balance_threshold=0), conn, list(facts))


async def copy_limit(pool: asyncpg.Pool, data: list[tuple[bytes, bytes]]) -> float:
    """The same rows, one per usage record, COPYed into a plain table: PostgreSQL's limit."""
    rows = [parse_usage(value) for _, value in data]
    tuples = [(r.event_id, r.key_id, r.account_id, r.units, r.occurred_at) for r in rows]
    async with pool.acquire() as conn:
        await conn.execute(
            "CREATE TABLE bench_copy "
            "(event_id uuid, key_id uuid, account_id text, units bigint, occurred_at timestamptz)"
        )
        started = time.perf_counter()
        for i in range(0, len(tuples), 50_000):
            await conn.copy_records_to_table("bench_copy", records=tuples[i : i + 50_000])
        return len(tuples) / (time.perf_counter() - started)


async def transfers_rate(pool: asyncpg.Pool, n: int, wallets: int, batch: int, workers: int) -> float:
    accounts = [Account(f"wallet:{i}", f"w{i}", "liability", "EUR/2", owner_kind="customer") for i in range(wallets)]
    async with pool.acquire() as conn, conn.transaction():
        book = await Book.open(conn)
        await book.load(accounts)
        await book.flush()
    run = uuid.uuid4().hex[:6]
    todo = [
        Transfer(f"{run}-{i}", f"wallet:{i % wallets}", f"wallet:{(i * 7 + 1) % wallets}", 1 + i % 100)
        for i in range(n)
    ]
    chunks = [todo[i : i + batch] for i in range(0, n, batch)]

    async def worker() -> None:
        while chunks:
            chunk = chunks.pop()
            async with pool.acquire() as conn, conn.transaction():
                outcomes = await transfer_many(await Book.open(conn), chunk)
            if any(o != "created" for o in outcomes):
                raise SystemExit(f"transfers refused: {[o for o in outcomes if o != 'created'][:3]}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return n / (time.perf_counter() - started)


async def main(n: int, accounts: int, transfers: int) -> None:
    stack = infrastructure()
    bootstrap, database_url = stack.cfg.kafka_bootstrap, stack.cfg.database_url
    print(f"bench-ledger: {n:,} usage records, {accounts} accounts, {transfers:,} transfers, on {machine()}")
    topic = await fresh_topic(bootstrap, "ledger-usage")
    schema, pool = await fresh_schema(database_url, SCHEMA)
    try:
        await seed_credits(pool, accounts, credits=10 * n // accounts)
        data = records(n, accounts, keys_per_account=2, billing="prepaid")
        await produce(bootstrap, topic.name, data)
        figure("ledger.limit_insert_rows_per_s", await copy_limit(pool, data), "rows/s")

        async def burn(conn: asyncpg.Connection, usages: list[UsageIntake]) -> None:
            await book_usage(Deps(low_balance_threshold=0), conn, usages)

        consumer = usage_consumer(bootstrap, topic, f"bench-{schema}", pool, burn)
        started = time.perf_counter()
        await consumer.start()
        elapsed = await until_applied(consumer, n) - started
        figure("ledger.usage_burned_per_s", n / elapsed, "records/s")
        async with pool.acquire() as conn:
            entries = await conn.fetchval("SELECT count(*) FROM journal_transactions WHERE kind = 'usage'")
        figure("ledger.journal_tx_per_s", entries / elapsed, "transactions/s")

        burst = records(20_000, accounts, keys_per_account=2, start_at=10 * n, billing="prepaid")
        last_produced = await produce(bootstrap, topic.name, burst)
        figure("ledger.lag_ms", (await until_applied(consumer, n + len(burst), 0.005) - last_produced) * 1000, "ms")
        await consumer.stop()

        figure("ledger.transfers_per_s", await transfers_rate(pool, transfers, 1000, 500, 2), "transfers/s")

        async with pool.acquire() as conn:
            burned = await conn.fetchval(
                "SELECT sum(p.amount)::bigint FROM postings p JOIN journal_transactions t ON t.id = p.tx_id "
                "WHERE t.kind = 'usage' AND p.amount > 0 AND p.asset = 'CALLS'"
            )
            problems = await verify(conn)
        if burned != n + len(burst) or problems:
            raise SystemExit(f"burned {burned} units, expected {n + len(burst)}; verify: {problems[:5]}")
        print(f"bench-ledger: {burned:,} units burned, each once; verify found no problem", flush=True)
    finally:
        await drop_schema(pool, schema)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--transfers", type=int, default=100_000)
    args = parser.parse_args()
    asyncio.run(main(args.records, args.accounts, args.transfers))
