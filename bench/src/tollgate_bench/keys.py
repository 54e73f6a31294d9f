"""`make bench-keys`: consuming validations through the keys service, and the PostgreSQL limit.

One keys-service process (one uvicorn worker) on a fresh schema with 1,000 metered keys;
the load generators are separate processes. Measured in one run: p50/p99/p99.9 at a
fixed 1,000 validations/s (loadgen.c, open loop), validations/s flat out (wrk, 64
connections), and the limits, with the service stopped: pgbench driving the statement
the service runs per batch, consume_and_record() (decision, counters and usage event,
one transaction), with one validation per transaction, directly against PostgreSQL,
flat out (the throughput limit) and at the same fixed 1,000/s (the latency limit).
"""

import asyncio
import json
import re
import sys
import tempfile
from pathlib import Path
from uuid import uuid4

import asyncpg
import httpx
from cryptography.fernet import Fernet

from tollgate_devstack.processes import free_port, wait_until
from tollgate_keys import keyformat
from tollgate_keys.app import SCHEMA

from . import loadgen
from .common import drop_schema, figure, fresh_schema, infrastructure, latency_ms, machine, pgbench, wrk

KEYS = 1000
HASH_SECRET = "bench-hash-secret-not-for-production"  # noqa: S105 - a throwaway bench schema


def fixed_rate(loadgen_bin: Path, port: int, keys_file: Path, rate: float, seconds: float) -> dict[str, float]:
    """`seconds` at `rate` (loadgen.c, open loop), after 3 s of warm-up at the same rate:
    connections open, plans cached, and no backlog from an overload (relay, vacuum)
    left to bill to the steady state."""
    loadgen.run(loadgen_bin, port, keys_file, rate, seconds=3)
    return loadgen.run(loadgen_bin, port, keys_file, rate, seconds)


def _pgbench(port: int, schema: str, workdir: Path, options: list[str]) -> str:
    """pgbench running the service's per-batch statement, consume_and_record(), with one
    validation per transaction (usage event included) for a random pgbench key; its
    script (and any log) in `workdir`."""
    script = workdir / "consume.sql"
    script.write_text(
        f"\\set k random(1, {KEYS})\n"
        "SELECT * FROM consume_and_record(ARRAY[sha256(convert_to(:k::text, 'UTF8'))], ARRAY[1::bigint], "
        "ARRAY[NULL]::text[], ARRAY[NULL]::text[], ARRAY[NULL]::int[]);\n"
    )
    out = pgbench(port, schema, script, ["-M", "prepared", *options])
    out.check_returncode()
    return out.stdout


def pgbench_tps(port: int, schema: str, seconds: int) -> float:
    """The throughput limit: 16 clients flat out."""
    with tempfile.TemporaryDirectory() as workdir:
        out = _pgbench(port, schema, Path(workdir), ["-c", "16", "-j", "2", "-T", str(seconds)])
    match = re.search(r"tps = ([\d.]+)", out)
    if not match:
        raise SystemExit(out)
    return float(match.group(1))


def pgbench_at_rate(port: int, schema: str, rate: int, seconds: int, clients: int = 2) -> dict[str, float]:
    """The latency limit: the same statement at the same fixed rate, at most `clients` in
    flight (the service's batcher runs at most two batches at once), from pgbench's
    per-transaction log. pgbench's arrivals are Poisson, and each latency counts from the
    transaction's scheduled start, so waiting for a free client is included, as the load
    generator includes queueing. The first second is warm-up (connections, plans) and is
    left out."""
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        options = ["-c", str(clients), "-j", "1", "-R", str(rate), "-T", str(seconds + 1), "-l"]
        _pgbench(port, schema, workdir, [*options, f"--log-prefix={workdir / 'tx'}"])
        lines = [line for log in workdir.glob("tx.*") for line in log.read_text().splitlines()]
    # Log lines: client, transaction, latency (µs), script, epoch seconds, µs[, lag].
    timed = [(int(f[4]) + int(f[5]) / 1e6, int(f[2]) / 1e6) for f in map(str.split, lines)]
    start = min(at for at, _ in timed)
    latencies = [latency for at, latency in timed if at >= start + 1]
    return {"transactions": len(latencies), **latency_ms(latencies)}


async def settle(pool: asyncpg.Pool) -> None:
    """A checkpoint before each timed phase, so no phase pays for the one before it: the
    WAL it wrote is flushed and recycled now, not while the next phase's commits wait."""
    async with pool.acquire() as conn:
        await conn.execute("CHECKPOINT")


async def seed(pool: object, keys_file: Path) -> None:
    plaintexts = [keyformat.generate("test") for _ in range(KEYS)]
    keys_file.write_text("\n".join(plaintexts))
    rows = [
        (uuid4(), f"cus_bench{i:04d}", keyformat.hash_key(HASH_SECRET.encode(), k), f"cs_http_{i}")
        for i, k in enumerate(plaintexts)
    ]
    async with pool.acquire() as conn:  # type: ignore[attr-defined]
        await conn.executemany(
            "INSERT INTO keys (id, account_id, key_hash, key_display, plan, billing, source_ref) "
            "VALUES ($1, $2, $3, 'tg_test_…', 'metered', 'metered', $4)",
            rows,
        )
        # pgbench's keys: hashes it can compute itself (sha256 of the key number).
        await conn.execute(
            "INSERT INTO keys (id, account_id, key_hash, key_display, plan, billing, source_ref) "
            "SELECT gen_random_uuid(), 'cus_pg' || k, sha256(convert_to(k::text, 'UTF8')), 'x', 'metered', "
            "'metered', 'cs_pg_' || k FROM generate_series(1, $1) k",
            KEYS,
        )


async def main() -> None:
    stack = infrastructure()
    cfg = stack.cfg
    print(f"bench-keys: {KEYS} keys, one keys-service process, on {machine()}", flush=True)
    loadgen_bin = loadgen.build(cfg.cache_dir)
    schema, pool = await fresh_schema(cfg.database_url, SCHEMA)
    keys_file = Path(tempfile.mkdtemp()) / "keys.txt"
    port = free_port()
    name = f"bench-keys-{schema}"
    try:
        await seed(pool, keys_file)
        stack.procs.start(
            name,
            [sys.executable, "-m", "tollgate_keys"],
            {
                "KEYS_DATABASE_URL": cfg.database_url,
                "KEYS_KAFKA_BOOTSTRAP_SERVERS": cfg.kafka_bootstrap,
                "KEYS_HTTP_PORT": str(port),
                "KEYS_SCHEMA_NAME": schema,
                "KEYS_HASH_SECRET": HASH_SECRET,
                "KEYS_ADMIN_PORT": str(free_port()),
                "KEYS_DELIVERY_KEYS": Fernet.generate_key().decode(),
                "KEYS_DB_POOL_MAX": "20",
                "KEYS_LOG_LEVEL": "WARNING",
                "KEYS_CONSUMERS_ENABLED": "false",
            },
        )
        wait_until(
            "keys service",
            lambda: httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200,
            60,
            lambda: stack.procs.log_tail(name),
        )
        await settle(pool)
        fixed = fixed_rate(loadgen_bin, port, keys_file, rate=1000, seconds=10)
        await settle(pool)
        flat = wrk("validate.lua", port, seconds=10, env={"KEYS_FILE": str(keys_file)})
        stack.procs.stop(name)  # the limits are PostgreSQL alone
        await settle(pool)
        limit = pgbench_tps(cfg.ports["postgres"], schema, seconds=10)
        await settle(pool)
        pg_fixed = pgbench_at_rate(cfg.ports["postgres"], schema, rate=1000, seconds=10)
        print(f"bench-keys: at 1,000/s {json.dumps(fixed)}", flush=True)
        print(f"bench-keys: flat out {json.dumps(flat)}", flush=True)
        print(f"bench-keys: pgbench at 1,000/s {json.dumps(pg_fixed)}", flush=True)
        figure("keys.validate_per_s", flat["rate"], "validations/s")
        figure("keys.p50_ms_flat_out", flat["p50_ms"], "ms")
        figure("keys.p99_ms_flat_out", flat["p99_ms"], "ms")
        figure("keys.p50_ms_at_1000", fixed["p50_ms"], "ms")
        figure("keys.p99_ms_at_1000", fixed["p99_ms"], "ms")
        figure("keys.p999_ms_at_1000", fixed["p999_ms"], "ms")
        figure("keys.pg_limit_per_s", limit, "tx/s")
        figure("keys.pg_p99_ms_at_1000", pg_fixed["p99_ms"], "ms")
        figure("keys.validate_vs_pg_limit", flat["rate"] / limit, "x")
        if fixed["errors"] or flat["errors"]:
            raise SystemExit(f"errors during the run: {fixed['errors']} at 1,000/s, {flat['errors']} flat out")
    finally:
        stack.procs.stop(name)
        await drop_schema(pool, schema)


if __name__ == "__main__":
    asyncio.run(main())
