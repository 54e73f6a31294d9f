"""The journal export as finance reads it, against a real PostgreSQL: the same columns
and types in CSV and Parquet, described, mapped to GL codes, filtered by unit, streamed
in constant memory, and enough for DuckDB to give revenue, deferred revenue and the
trial balance without a CASE or any string parsing."""

import asyncio
import io
import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import asyncpg
import duckdb
import pyarrow.parquet as pq
import pytest

from tollgate_ledger import exports, finance, repo
from tollgate_ledger.domain import period_of

from .test_revenue import plant_every_movement

EVER = exports.Selection(start=datetime(2000, 1, 1, tzinfo=UTC), end=datetime(2100, 1, 1, tzinfo=UTC))


async def export(
    pool: asyncpg.Pool, selection: exports.Selection, fmt: str, gl: exports.GlCodes | None = None
) -> bytes:
    gl = gl or exports.GlCodes.load(None)
    out = io.BytesIO()
    async with pool.acquire() as conn:
        chunks = exports.rows(conn, selection, gl)
        if fmt == "parquet":
            await exports.parquet_file(chunks, out)
        else:
            async for piece in exports.csv_chunks(chunks):
                out.write(piece)
    return out.getvalue()


@pytest.fixture
async def planted(pool: asyncpg.Pool, tmp_path: Path) -> dict[str, Path]:
    await plant_every_movement(pool)
    files = {}
    for fmt in ("csv", "parquet"):
        files[fmt] = tmp_path / f"journal.{fmt}"
        files[fmt].write_bytes(await export(pool, EVER, fmt))
    return files


def read(con: duckdb.DuckDBPyConnection, path: Path) -> str:
    """The DuckDB relation of an export: Parquet as is; CSV with the documented types."""
    if path.suffix == ".parquet":
        return f"read_parquet('{path}')"
    types = {c.name: duckdb_type(str(c.type)) for c in exports.COLUMNS}
    return f"read_csv('{path}', header = true, columns = {types!r})"


def duckdb_type(arrow: str) -> str:
    return {
        "int64": "BIGINT",
        "int32": "INTEGER",
        "string": "VARCHAR",
        "date32[day]": "DATE",
        "timestamp[us, tz=UTC]": "TIMESTAMPTZ",
        "decimal128(38, 6)": "DECIMAL(38, 6)",
    }[arrow]


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
async def test_duckdb_gets_revenue_deferred_revenue_and_the_trial_balance_without_case_or_parsing(
    pool: asyncpg.Pool, planted: dict[str, Path], fmt: str
) -> None:
    period = period_of(datetime.now(UTC))
    first_day = date.fromisoformat(f"{period}-01")
    con = duckdb.connect()
    journal = read(con, planted[fmt])
    revenue, deferred = con.execute(
        f"SELECT -sum(amount) FILTER (WHERE account_type = 'revenue' AND unit = 'USD' AND period = $p), "
        f"  -sum(amount) FILTER (WHERE gl_code = '2400' AND period <= $p) FROM {journal}",
        {"p": first_day},
    ).fetchone()  # type: ignore[misc]
    async with pool.acquire() as conn:
        (rf,) = await finance.revenue(conn, period)
        tb = await repo.trial_balance(conn, period=period)
    assert revenue == Decimal(rf.recognised).scaleb(-2) == Decimal("46.00")
    assert deferred == Decimal(rf.closing).scaleb(-2) == Decimal("14.00")

    trial = con.execute(
        "SELECT account_id, sum(amount_minor) FILTER (WHERE period < $p), "
        "  sum(amount_minor) FILTER (WHERE period = $p AND amount > 0), "
        "  -sum(amount_minor) FILTER (WHERE period = $p AND amount < 0), sum(amount_minor) "
        f"FROM {journal} WHERE period <= $p GROUP BY account_id ORDER BY account_id",
        {"p": first_day},
    ).fetchall()
    expected = sorted((r.account_id, r.opening, r.debits, r.credits, r.closing) for r in tb.rows)
    assert [(a, o or 0, d or 0, c or 0, x) for a, o, d, c, x in trial] == expected
    # Each transaction sums to zero per unit, in the exact decimal as in minor units.
    assert con.execute(
        f"SELECT count(*) FROM (SELECT tx_id, unit FROM {journal} GROUP BY ALL HAVING sum(amount) <> 0)"
    ).fetchone() == (0,)


async def test_csv_and_parquet_carry_the_same_columns_types_and_rows(planted: dict[str, Path]) -> None:
    con = duckdb.connect()
    parquet = con.execute(f"SELECT * FROM {read(con, planted['parquet'])} ORDER BY posting_id").fetchall()
    csv = con.execute(f"SELECT * FROM {read(con, planted['csv'])} ORDER BY posting_id").fetchall()
    assert parquet == csv and parquet


async def test_every_parquet_column_is_described_as_docs_ledger_md_describes_it(planted: dict[str, Path]) -> None:
    schema = pq.read_schema(planted["parquet"])
    docs = (Path(__file__).parents[4] / "docs" / "ledger.md").read_text()
    for column in exports.COLUMNS:
        field = schema.field(column.name)
        assert field.metadata[b"description"].decode() == column.description
        assert f"| `{column.name}` |" in docs and column.description in docs, f"docs/ledger.md: {column.name}"


async def test_gl_codes_come_from_finance_s_mapping_and_the_unit_filter_keeps_one_unit(
    pool: asyncpg.Pool, planted: dict[str, Path], tmp_path: Path
) -> None:
    mapping = tmp_path / "gl.json"
    mapping.write_text(json.dumps({"rules": [{"match": "customer:*:prepaid:*", "code": "2410-DEFERRED"}]}))
    body = await export(
        pool, exports.Selection(start=EVER.start, end=EVER.end, asset="USD/2"), "parquet", exports.GlCodes.load(mapping)
    )
    table = pq.read_table(io.BytesIO(body)).to_pylist()
    assert {r["unit"] for r in table} == {"USD"} and {r["scale"] for r in table} == {2}
    assert {r["gl_code"] for r in table if ":prepaid:" in r["account_id"]} == {"2410-DEFERRED"}
    assert {r["gl_code"] for r in table if ":prepaid:" not in r["account_id"]} == {None}
    assert all(r["amount"] == Decimal(r["amount_minor"]).scaleb(-2) for r in table)


BULK = (
    "WITH tx AS ("
    "  INSERT INTO journal_transactions "
    "    (seq, idempotency_key, kind, business_time, created_at, period, prev_hash, hash) "
    "  SELECT g, 'bulk:' || g, 'transfer', now(), now(), to_char(now(), 'YYYY-MM'), '\\x00', sha256(g::text::bytea) "
    "  FROM generate_series($1::bigint, $2::bigint) g RETURNING id) "
    "INSERT INTO postings (tx_id, account_id, asset, amount) "
    "SELECT id, 'system:bulk_from:USD/2', 'USD/2', 12345 FROM tx UNION ALL "
    "SELECT id, 'system:bulk_to:USD/2', 'USD/2', -12345 FROM tx"
)


async def peak_rss_of_export(database_url: str, schema: str, fmt: str, out: Path) -> tuple[int, int]:
    """Run the export CLI as finance would, with only the settings it reads; its peak
    resident memory in KiB and the postings it wrote."""
    argv = ["export", "--from", "2000-01-01T00:00:00+00:00", "--to", "2100-01-01T00:00:00+00:00"]
    argv += ["--format", fmt, "--out", str(out)]
    script = (
        "import resource, sys\n"
        "from tollgate_ledger.cli import main\n"
        f"rc = main({argv!r})\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
        "sys.exit(rc)\n"
    )
    env = {"PATH": os.environ["PATH"], "LEDGER_DATABASE_URL": database_url, "LEDGER_SCHEMA_NAME": schema}
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(child.communicate(), 300)
    done = subprocess.CompletedProcess(argv, child.returncode or 0, stdout.decode(), stderr.decode())
    assert done.returncode == 0, done.stderr
    written = int(done.stderr.strip().splitlines()[-1].split()[1])
    return int(done.stdout.strip().splitlines()[-1]), written


async def test_an_export_streams_in_constant_memory_whatever_the_period_holds(
    pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    async with pool.acquire() as conn:
        schema = await conn.fetchval("SELECT current_schema()")
        await conn.execute(
            "INSERT INTO accounts (id, owner, owner_kind, type, asset) VALUES "
            "('system:bulk_from:USD/2', 'system', 'system', 'asset', 'USD/2'), "
            "('system:bulk_to:USD/2', 'system', 'system', 'liability', 'USD/2')"
        )
        await conn.execute(BULK, 1, 2_000)
    small = {
        fmt: await peak_rss_of_export(database_url, schema, fmt, tmp_path / f"small.{fmt}")
        for fmt in ("csv", "parquet")
    }
    async with pool.acquire() as conn:
        await conn.execute(BULK, 2_001, 150_000)
    large = {
        fmt: await peak_rss_of_export(database_url, schema, fmt, tmp_path / f"large.{fmt}")
        for fmt in ("csv", "parquet")
    }
    for fmt in ("csv", "parquet"):
        assert (small[fmt][1], large[fmt][1]) == (4_000, 300_000)
        # 296,000 more postings held in memory would take hundreds of MB; streamed,
        # the peak moves by no more than a few chunks' worth.
        assert large[fmt][0] - small[fmt][0] < 40 * 1024, (fmt, small[fmt][0], large[fmt][0])
    assert pq.read_metadata(tmp_path / "large.parquet").num_rows == 300_000
