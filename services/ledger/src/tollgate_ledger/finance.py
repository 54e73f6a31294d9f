"""For finance: journal exports, period close, and verifying the chain and the totals."""

import csv
import io
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import pyarrow as pa
import pyarrow.parquet as pq

from .book import Book
from .domain import ChainedRecord, chain_hash, next_period, period_bounds

EXPORT_COLUMNS = (
    "tx_id",
    "seq",
    "business_time",
    "created_at",
    "period",
    "kind",
    "account_id",
    "account_type",
    "asset",
    "amount",
    "direction",
    "idempotency_key",
    "source_ref",
    "reverses",
)
EXPORT_SCHEMA = pa.schema(
    [
        ("tx_id", pa.int64()),
        ("seq", pa.int64()),
        ("business_time", pa.timestamp("us", tz="UTC")),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("period", pa.string()),
        ("kind", pa.string()),
        ("account_id", pa.string()),
        ("account_type", pa.string()),
        ("asset", pa.string()),
        ("amount", pa.int64()),
        ("direction", pa.string()),
        ("idempotency_key", pa.string()),
        ("source_ref", pa.string()),
        ("reverses", pa.int64()),
    ]
)


@dataclass(frozen=True)
class Selection:
    """A period ('2026-11', by the period each entry was booked in) or business-time range."""

    period: str | None = None
    start: datetime | None = None
    end: datetime | None = None

    def where(self) -> tuple[str, list[object]]:
        if self.period is not None:
            return "t.period = $1", [self.period]
        if self.start is not None and self.end is not None:
            return "t.business_time >= $1 AND t.business_time < $2", [self.start, self.end]
        raise ValueError("give a period, or both start and end")


async def journal_rows(conn: asyncpg.Connection, selection: Selection) -> list[dict[str, object]]:
    """One row per posting: amounts are positive with a direction, as finance reads them."""
    where, args = selection.where()
    rows = await conn.fetch(
        "SELECT t.id AS tx_id, t.seq, t.business_time, t.created_at, t.period, t.kind, p.account_id, "
        "  a.type AS account_type, p.asset, abs(p.amount) AS amount, "
        "  CASE WHEN p.amount > 0 THEN 'debit' ELSE 'credit' END AS direction, "
        "  t.idempotency_key, t.source_ref, t.reverses "
        "FROM journal_transactions t JOIN postings p ON p.tx_id = t.id JOIN accounts a ON a.id = p.account_id "
        f"WHERE {where} ORDER BY t.seq, p.id",
        *args,
    )
    return [dict(r) for r in rows]


def to_csv(rows: list[dict[str, object]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: v.isoformat() if isinstance(v, datetime) else ("" if v is None else v) for k, v in row.items()}
        )
    return out.getvalue().encode()


def to_parquet(rows: list[dict[str, object]]) -> bytes:
    table = pa.Table.from_pylist(rows, schema=EXPORT_SCHEMA)
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


# --- period close ---------------------------------------------------------------------


class CloseRefused(Exception):
    pass


@dataclass(frozen=True)
class Closed:
    period: str
    accounts: int
    chain_seq: int
    chain_hash: str


async def close_period(conn: asyncpg.Connection, period: str) -> Closed:
    """Close `period`: per account, opening + debits - credits = closing, stamped with the
    chain position. Inside a Book, so no entry lands while the period is summed."""
    book = await Book.open(conn)
    start, end = period_bounds(period)
    last = await conn.fetchval("SELECT max(period) FROM periods")
    if last is not None and period != next_period(last):
        raise CloseRefused(f"periods close in order: the next to close is {next_period(last)}")
    if end > book.now:
        raise CloseRefused(f"{period} has not ended yet (it ends {end.isoformat()})")
    head = await conn.fetchrow("SELECT seq, hash FROM chain_head")
    await conn.execute(
        "INSERT INTO periods (period, starts_at, ends_at, closed_at, chain_seq, chain_hash) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        period,
        start,
        end,
        book.now,
        head["seq"],
        head["hash"],
    )
    count = await conn.fetchval(
        "WITH activity AS ("
        "  SELECT p.account_id, "
        "    coalesce(sum(p.amount) FILTER (WHERE t.period < $1), 0) AS opening, "
        "    coalesce(sum(p.amount) FILTER (WHERE t.period = $1 AND p.amount > 0), 0) AS debits, "
        "    coalesce(-sum(p.amount) FILTER (WHERE t.period = $1 AND p.amount < 0), 0) AS credits "
        "  FROM postings p JOIN journal_transactions t ON t.id = p.tx_id WHERE t.period <= $1 "
        "  GROUP BY p.account_id), "
        "ins AS (INSERT INTO period_balances (period, account_id, asset, opening, debits, credits, closing) "
        "  SELECT $1, x.account_id, a.asset, x.opening, x.debits, x.credits, x.opening + x.debits - x.credits "
        "  FROM activity x JOIN accounts a ON a.id = x.account_id RETURNING 1) "
        "SELECT count(*) FROM ins",
        period,
    )
    # Tie-out: every account's closing equals the sum of all its postings booked through the period.
    off = await conn.fetch(
        "SELECT pb.account_id FROM period_balances pb WHERE pb.period = $1 AND pb.closing <> ("
        "  SELECT coalesce(sum(p.amount), 0) FROM postings p JOIN journal_transactions t ON t.id = p.tx_id "
        "  WHERE p.account_id = pb.account_id AND t.period <= $1)",
        period,
    )
    if off:
        raise CloseRefused(f"closing balances do not tie out for {[r['account_id'] for r in off]}")
    return Closed(period, count, head["seq"], bytes(head["hash"]).hex())


# --- verify ---------------------------------------------------------------------------


async def verify(conn: asyncpg.Connection, *, chunk: int = 5000) -> list[str]:
    """Recompute the hash chain from the journal and check the running totals against the
    postings; returns every problem found (none when the book is intact)."""
    problems: list[str] = []
    prev = bytes(32)
    last_seq = 0
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        stamps = {r["chain_seq"]: r for r in await conn.fetch("SELECT period, chain_seq, chain_hash FROM periods")}
        while True:
            txs = await conn.fetch(
                "SELECT * FROM journal_transactions WHERE seq > $1 ORDER BY seq LIMIT $2", last_seq, chunk
            )
            if not txs:
                break
            postings = await conn.fetch(
                "SELECT tx_id, account_id, asset, amount FROM postings WHERE tx_id = ANY($1::bigint[]) ORDER BY id",
                [t["id"] for t in txs],
            )
            by_tx: dict[int, list[tuple[str, str, int]]] = {}
            for p in postings:
                by_tx.setdefault(p["tx_id"], []).append((p["account_id"], p["asset"], p["amount"]))
            for t in txs:
                if t["seq"] != last_seq + 1:
                    problems.append(f"seq {last_seq + 1}: missing (next is {t['seq']})")
                record = ChainedRecord(
                    seq=t["seq"],
                    idempotency_key=t["idempotency_key"],
                    kind=t["kind"],
                    business_time=t["business_time"],
                    created_at=t["created_at"],
                    period=t["period"],
                    source_ref=t["source_ref"],
                    reverses=t["reverses"],
                    postings=tuple(by_tx.get(t["id"], [])),
                )
                if bytes(t["prev_hash"]) != prev:
                    problems.append(f"seq {t['seq']}: prev_hash does not link to seq {t['seq'] - 1}")
                expected = chain_hash(prev, record)
                if bytes(t["hash"]) != expected:
                    problems.append(
                        f"seq {t['seq']} (tx {t['id']}, {t['idempotency_key']}): content does not match its hash"
                    )
                prev = expected
                if (stamp := stamps.get(t["seq"])) is not None and bytes(stamp["chain_hash"]) != expected:
                    problems.append(f"period {stamp['period']}: stamped chain hash does not match seq {t['seq']}")
                last_seq = t["seq"]
        head = await conn.fetchrow("SELECT seq, hash FROM chain_head")
        if head["seq"] != last_seq or (last_seq and bytes(head["hash"]) != prev):
            problems.append(f"chain head (seq {head['seq']}) does not match the journal's last entry (seq {last_seq})")
        for r in await conn.fetch(
            "SELECT b.account_id FROM balances b LEFT JOIN ("
            "  SELECT debit_account AS account_id, sum(amount) AS d, 0 AS c FROM pending_transfers "
            "  WHERE state = 'pending' GROUP BY debit_account UNION ALL "
            "  SELECT credit_account, 0, sum(amount) FROM pending_transfers WHERE state = 'pending' "
            "  GROUP BY credit_account) h ON h.account_id = b.account_id "
            "GROUP BY b.account_id, b.debits_pending, b.credits_pending "
            "HAVING b.debits_pending <> coalesce(sum(h.d), 0) OR b.credits_pending <> coalesce(sum(h.c), 0)"
        ):
            problems.append(f"account {r['account_id']}: pending totals differ from its open holds")
        for r in await conn.fetch(
            "SELECT g.account_id FROM credit_grants g JOIN balances b ON b.account_id = g.account_id "
            "GROUP BY g.account_id, b.credits_posted, b.debits_posted "
            "HAVING sum(g.remaining) > b.credits_posted - b.debits_posted"
        ):
            problems.append(f"account {r['account_id']}: credit grants hold more than the account's balance")
        for r in await conn.fetch(
            "SELECT b.account_id FROM balances b LEFT JOIN ("
            "  SELECT account_id, coalesce(sum(amount) FILTER (WHERE amount > 0), 0) AS d, "
            "    coalesce(-sum(amount) FILTER (WHERE amount < 0), 0) AS c FROM postings GROUP BY account_id) s "
            "  ON s.account_id = b.account_id "
            "WHERE b.debits_posted <> coalesce(s.d, 0) OR b.credits_posted <> coalesce(s.c, 0)"
        ):
            problems.append(f"account {r['account_id']}: running totals differ from its postings")
        for r in await conn.fetch(
            "SELECT tx_id, asset FROM postings GROUP BY tx_id, asset HAVING sum(amount) <> 0 ORDER BY tx_id"
        ):
            problems.append(f"tx {r['tx_id']}: {r['asset']} postings do not sum to zero")
    return problems
