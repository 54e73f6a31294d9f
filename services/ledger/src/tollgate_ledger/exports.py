"""The journal as finance reads it: one row per posting, in CSV or Parquet with the same
columns and types, streamed (constant memory for any period).

Amounts are signed, debits positive and credits negative, so a transaction's rows sum to
zero per unit and a SUM over an account is its debit-normal balance; each row carries
the exact decimal in the unit, the integer minor amount, and the scale. Accounts come
with a name, their type, their owner and a general-ledger code (from a mapping finance
sets, `LEDGER_GL_CODES_FILE`). Every column is described in the Parquet file's metadata
and in docs/ledger.md.
"""

import csv
import fnmatch
import io
import json
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO

import asyncpg
import pyarrow as pa
import pyarrow.parquet as pq

from .domain import account_name

DEFAULT_GL_CODES = Path(__file__).with_name("gl_codes.json")
CHUNK_ROWS = 5_000  # rows read, formatted and written at a time: the export's memory
AMOUNT = pa.decimal128(38, 6)  # exact for every unit Tollgate books (scales up to 6)


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    description: str


COLUMNS = (
    Column("posting_id", pa.int64(), "The posting's own id: unique, stable"),
    Column("tx_id", pa.int64(), "The journal transaction the posting belongs to; its rows sum to zero per unit"),
    Column("seq", pa.int64(), "The transaction's place in the hash-chained journal"),
    Column("business_time", pa.timestamp("us", tz="UTC"), "When what the transaction records happened"),
    Column("booked_at", pa.timestamp("us", tz="UTC"), "When the ledger booked it"),
    Column("period", pa.date32(), "The accounting period it was booked in: the first day of its month"),
    Column(
        "kind",
        pa.string(),
        "What the transaction is: purchase, top_up, usage, grant_expiry, refund, dispute_loss, transfer…",
    ),
    Column("account_id", pa.string(), "The ledger account"),
    Column("account_name", pa.string(), "The account, in words"),
    Column("account_type", pa.string(), "asset, liability, equity, revenue or expense"),
    Column("owner", pa.string(), "Whose account: a customer's account id (their Stripe customer), or 'system'"),
    Column("gl_code", pa.string(), "The general-ledger account it maps to (LEDGER_GL_CODES_FILE); null if none"),
    Column("unit", pa.string(), "The currency (USD) or the credit unit (CALLS)"),
    Column("scale", pa.int32(), "Decimal places of the unit: amount_minor = amount × 10^scale"),
    Column("amount", AMOUNT, "Signed, in the unit: debits positive, credits negative"),
    Column("amount_minor", pa.int64(), "The same, as an integer of the unit's smallest part (cents)"),
    Column("idempotency_key", pa.string(), "The transaction's business key: the same fact is never booked twice"),
    Column("source_ref", pa.string(), "What it came from: a PaymentIntent, a Checkout Session, a top-up…"),
    Column("reverses", pa.int64(), "For a correction: the tx_id it reverses"),
)
SCHEMA = pa.schema(
    [pa.field(c.name, c.type, metadata={"description": c.description}) for c in COLUMNS],
    metadata={"description": "Tollgate ledger journal: one row per posting"},
)
QUERY = (
    "SELECT p.id AS posting_id, t.id AS tx_id, t.seq, t.business_time, t.created_at AS booked_at, t.period, "
    "  t.kind, p.account_id, a.type AS account_type, a.owner, p.asset, p.amount, t.idempotency_key, "
    "  t.source_ref, t.reverses "
    "FROM journal_transactions t JOIN postings p ON p.tx_id = t.id JOIN accounts a ON a.id = p.account_id "
)


@dataclass(frozen=True)
class Selection:
    """A period ('2026-11', by the period each entry was booked in) or a business-time
    range; optionally one unit (`USD/2`, `CALLS`)."""

    period: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    asset: str | None = None

    def where(self) -> tuple[str, list[object]]:
        args: list[object]
        if self.period is not None:
            clauses, args = ["t.period = $1"], [self.period]
        elif self.start is not None and self.end is not None:
            clauses, args = ["t.business_time >= $1 AND t.business_time < $2"], [self.start, self.end]
        else:
            raise ValueError("give a period, or both start and end")
        if self.asset is not None:
            args.append(self.asset)
            clauses.append(f"p.asset = ${len(args)}")
        return " AND ".join(clauses), args


class GlCodes:
    """Ledger accounts to general-ledger codes: the first rule whose pattern matches."""

    def __init__(self, rules: list[tuple[str, str]]) -> None:
        self.rules = rules

    @classmethod
    def load(cls, path: Path | None) -> "GlCodes":
        raw = json.loads((path or DEFAULT_GL_CODES).read_text())
        return cls([(r["match"], r["code"]) for r in raw["rules"]])

    def code(self, account_id: str) -> str:
        return next((code for pattern, code in self.rules if fnmatch.fnmatchcase(account_id, pattern)), "")


def unit_and_scale(asset: str) -> tuple[str, int]:
    unit, _, scale = asset.partition("/")
    return unit, int(scale or 0)


def _row(r: asyncpg.Record, gl: GlCodes) -> dict[str, Any]:
    unit, scale = unit_and_scale(r["asset"])
    period = datetime.strptime(r["period"], "%Y-%m").date()
    return {
        "posting_id": r["posting_id"],
        "tx_id": r["tx_id"],
        "seq": r["seq"],
        "business_time": r["business_time"],
        "booked_at": r["booked_at"],
        "period": period,
        "kind": r["kind"],
        "account_id": r["account_id"],
        "account_name": account_name(r["account_id"]),
        "account_type": r["account_type"],
        "owner": r["owner"],
        "gl_code": gl.code(r["account_id"]) or None,
        "unit": unit,
        "scale": scale,
        "amount": Decimal(r["amount"]).scaleb(-scale),
        "amount_minor": r["amount"],
        "idempotency_key": r["idempotency_key"],
        "source_ref": r["source_ref"],
        "reverses": r["reverses"],
    }


async def rows(conn: asyncpg.Connection, selection: Selection, gl: GlCodes) -> AsyncIterator[list[dict[str, Any]]]:
    """The selected postings in journal order, CHUNK_ROWS at a time, from a server-side
    cursor (the export never holds the period in memory), in one snapshot."""
    where, args = selection.where()
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        cursor = conn.cursor(f"{QUERY} WHERE {where} ORDER BY t.seq, p.id", *args, prefetch=CHUNK_ROWS)
        chunk: list[dict[str, Any]] = []
        async for r in cursor:
            chunk.append(_row(r, gl))
            if len(chunk) >= CHUNK_ROWS:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


def _csv_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, datetime | date):
        return v.isoformat()
    if isinstance(v, Decimal):
        return format(v, "f")
    return str(v)


async def csv_chunks(chunks: AsyncIterator[list[dict[str, Any]]]) -> AsyncIterator[bytes]:
    """CSV, a header then each chunk's rows: a missing value is an empty field, a decimal
    is written in full, a time in ISO 8601 with its offset."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c.name for c in COLUMNS])
    async for chunk in chunks:
        writer.writerows([[_csv_value(row[c.name]) for c in COLUMNS] for row in chunk])
        yield out.getvalue().encode()
        out.seek(0)
        out.truncate()
    if out.getvalue():
        yield out.getvalue().encode()


async def parquet_file(chunks: AsyncIterator[list[dict[str, Any]]], sink: BinaryIO) -> int:
    """Parquet into `sink`, a row group per chunk; returns the rows written."""
    written = 0
    with pq.ParquetWriter(sink, SCHEMA, compression="zstd") as writer:
        async for chunk in chunks:
            writer.write_table(pa.Table.from_pylist(chunk, schema=SCHEMA))
            written += len(chunk)
        if not written:
            writer.write_table(SCHEMA.empty_table())
    return written


async def parquet_chunks(chunks: AsyncIterator[list[dict[str, Any]]]) -> AsyncIterator[bytes]:
    """Parquet, streamed: written to a spooled temporary file (memory up to 8 MB, disk
    beyond), then sent in pieces. Parquet's footer comes last, so nothing can be sent
    before the last row is written."""
    with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as spool:
        await parquet_file(chunks, spool)  # type: ignore[arg-type]
        spool.seek(0)
        for piece in _pieces(spool):  # type: ignore[arg-type]
            yield piece


def _pieces(f: BinaryIO, size: int = 256 * 1024) -> Iterator[bytes]:
    while piece := f.read(size):
        yield piece
