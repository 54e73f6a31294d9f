"""`make bench-transfers`: single transfers through the ledger's HTTP API, and in the same
run the limit: pgbench running one transfer's statements per transaction.

One ledger process (one uvicorn worker, consumers off) on a fresh schema with 1,000
funded wallets; wrk (C) drives `POST /v1/transfers` of one cent between two random
wallets, each request with its own id, 64 connections, closed loop. The limit is
PostgreSQL alone, the service stopped: pgbench with 16 clients, each transaction doing
what the Book does for one transfer (the chain lock, the period, the balances and the
idempotency key read, the journal row, both postings in one statement, the chain head,
both balances, both outbox events). Afterwards every answered transfer must be in the
journal once, and `verify` must find nothing wrong.

  ledger.http_transfers_per_s       201s per second through HTTP, 64 connections
  ledger.http_transfer_p99_ms       their p99 latency
  ledger.transfer_tx_limit_per_s    pgbench, one transfer per transaction
  ledger.http_vs_tx_limit           the ratio
"""

import asyncio
import json
import os
import re
import secrets
import sys
import tempfile
from pathlib import Path

import asyncpg
import httpx

from tollgate_devstack.processes import free_port, wait_until
from tollgate_ledger.app import SCHEMA
from tollgate_ledger.book import Book
from tollgate_ledger.domain import Account
from tollgate_ledger.finance import verify
from tollgate_ledger.handlers import transfer_many
from tollgate_ledger.holds import Transfer

from .common import drop_schema, figure, fresh_schema, infrastructure, machine, pgbench, wrk
from .keys import settle

WALLETS = 1000
HISTORY = 50_000
CONNECTIONS = 64
TOKEN = secrets.token_urlsafe(24)


async def seed(pool: asyncpg.Pool, history: int = HISTORY) -> None:
    """1,000 wallets, each funded with $10 billion so no transfer is refused, and a
    history of `history` transfers between them, analysed: the planner then reads the
    journal as it would a ledger in use, not as a table of a few rows."""
    funding = Account("funding", "system", "asset", "EUR/2", owner_kind="system")
    wallets = [Account(f"wallet:{i}", f"w{i}", "liability", "EUR/2", ("no_overdraft",)) for i in range(1, WALLETS + 1)]
    async with pool.acquire() as conn, conn.transaction():
        book = await Book.open(conn)
        await book.load([funding, *wallets])
        await transfer_many(book, [Transfer(f"fund-{w.id}", "funding", w.id, 10**12) for w in wallets])
    for start in range(0, history, 5_000):
        chunk = [
            Transfer(f"past-{i}", f"wallet:{i % WALLETS + 1}", f"wallet:{(i * 7 + 3) % WALLETS + 1}", 1)
            for i in range(start, min(history, start + 5_000))
        ]
        async with pool.acquire() as conn, conn.transaction():
            await transfer_many(await Book.open(conn), [t for t in chunk if t.debit != t.credit])
    async with pool.acquire() as conn:
        await conn.execute("ANALYZE")


def transfers_flat_out(port: int, seconds: int, run: str) -> dict[str, float]:
    return wrk("transfers.lua", port, seconds, CONNECTIONS, {"WALLETS": str(WALLETS), "RUN": run, "TOKEN": TOKEN})


def pgbench_tps(port: int, schema: str, seconds: int) -> float:
    with tempfile.TemporaryDirectory() as workdir:
        script = Path(workdir) / "transfer.sql"
        template = Path(__file__).with_name("transfer.sql").read_text()
        script.write_text(template.replace("{wallets}", str(WALLETS)))
        out = pgbench(port, schema, script, ["-c", "16", "-j", "2", "-T", str(seconds)])
    match = re.search(r"tps = ([\d.]+)", out.stdout)
    if not match or ("failed" in out.stdout and not re.search(r"number of failed transactions: 0 ", out.stdout)):
        raise SystemExit(out.stdout + out.stderr)
    return float(match.group(1))


async def main(seconds: int) -> None:
    stack = infrastructure()
    cfg = stack.cfg
    print(f"bench-transfers: {WALLETS} wallets, one ledger process, {CONNECTIONS} connections, on {machine()}")
    schema, pool = await fresh_schema(cfg.database_url, SCHEMA)
    admin, name, run = free_port(), f"bench-ledger-{schema}", secrets.token_hex(4)
    try:
        await seed(pool)
        stack.procs.start(
            name,
            [sys.executable, "-m", "tollgate_ledger"],
            {
                "LEDGER_DATABASE_URL": cfg.database_url,
                "LEDGER_KAFKA_BOOTSTRAP_SERVERS": cfg.kafka_bootstrap,
                "LEDGER_SCHEMA_NAME": schema,
                "LEDGER_HTTP_PORT": str(free_port()),
                "LEDGER_ADMIN_PORT": str(admin),
                "LEDGER_OPERATOR_TOKENS": f"bench:{TOKEN}",
                "LEDGER_KEYS_TOKEN": secrets.token_urlsafe(24),
                "LEDGER_DB_POOL_MAX": "20",
                "LEDGER_LOG_LEVEL": "WARNING",
                "LEDGER_CONSUMERS_ENABLED": "false",
            },
        )
        wait_until(
            "ledger service",
            lambda: httpx.get(f"http://127.0.0.1:{admin}/readyz").status_code == 200,
            60,
            lambda: stack.procs.log_tail(name),
        )
        transfers_flat_out(admin, 3, f"warm-{run}")
        await settle(pool)
        flat = transfers_flat_out(admin, seconds, run)
        stack.procs.stop(name)
        async with pool.acquire() as conn:
            booked = await conn.fetchval(
                "SELECT count(*) FROM journal_transactions WHERE idempotency_key LIKE $1", f"transfer:{run}-%"
            )
            problems = await verify(conn)
        await settle(pool)
        limit = pgbench_tps(cfg.ports["postgres"], schema, seconds)
        print(f"bench-transfers: flat out {json.dumps(flat)}", flush=True)
        figure("ledger.http_transfers_per_s", flat["rate"], "transfers/s")
        figure("ledger.http_transfer_p99_ms", flat["p99_ms"], "ms")
        figure("ledger.transfer_tx_limit_per_s", limit, "tx/s")
        figure("ledger.http_vs_tx_limit", flat["rate"] / limit, "x")
        if flat["errors"] or booked < flat["requests"] - CONNECTIONS or problems:
            raise SystemExit(f"{flat['errors']} errors, {booked} of {flat['requests']} booked, verify: {problems[:3]}")
        print(f"bench-transfers: {booked:,} transfers booked, each once; verify found no problem", flush=True)
    finally:
        stack.procs.stop(name)
        await drop_schema(pool, schema)


if __name__ == "__main__":
    asyncio.run(main(int(os.environ.get("BENCH_SECONDS", "15"))))
