"""The ledger's SQL: one small function per statement."""

from collections import defaultdict
from datetime import datetime

import asyncpg

from .domain import Account, Balance, Posting


async def ensure_accounts(conn: asyncpg.Connection, accounts: list[Account]) -> None:
    await conn.executemany(
        "INSERT INTO accounts (id, owner, type, asset, flags) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
        [(a.id, a.owner, a.type, a.asset, list(a.flags)) for a in accounts],
    )
    await conn.executemany(
        "INSERT INTO balances (account_id) VALUES ($1) ON CONFLICT DO NOTHING", [(a.id,) for a in accounts]
    )


async def insert_transaction(
    conn: asyncpg.Connection, idempotency_key: str, kind: str, business_time: datetime, source_ref: str | None
) -> int | None:
    """The new transaction's id, or None if this idempotency key was already booked."""
    tx_id: int | None = await conn.fetchval(
        "INSERT INTO journal_transactions (idempotency_key, kind, business_time, source_ref) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
        idempotency_key,
        kind,
        business_time,
        source_ref,
    )
    return tx_id


async def insert_postings(conn: asyncpg.Connection, tx_id: int, postings: list[Posting]) -> None:
    await conn.executemany(
        "INSERT INTO postings (tx_id, account_id, asset, amount) VALUES ($1, $2, $3, $4)",
        [(tx_id, p.account.id, p.account.asset, p.amount) for p in postings],
    )


async def apply_to_balances(conn: asyncpg.Connection, postings: list[Posting]) -> list[Balance]:
    """Add postings to running totals. Rows are locked in account-id order so two
    transactions touching the same accounts cannot deadlock."""
    debits: dict[str, int] = defaultdict(int)
    credits: dict[str, int] = defaultdict(int)
    for p in postings:
        if p.amount > 0:
            debits[p.account.id] += p.amount
        else:
            credits[p.account.id] -= p.amount
    rows = await conn.fetch(
        "UPDATE balances b SET debits_posted = b.debits_posted + d.debit, "
        "  credits_posted = b.credits_posted + d.credit, version = b.version + 1 "
        "FROM (SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS t(account_id, debit, credit) "
        "      ORDER BY account_id) d, accounts a "
        "WHERE b.account_id = d.account_id AND a.id = b.account_id "
        "RETURNING b.*, a.type, a.asset",
        *_columns(sorted(set(debits) | set(credits)), debits, credits),
    )
    return [_balance(r) for r in rows]


def _columns(ids: list[str], debits: dict[str, int], credits: dict[str, int]) -> tuple[list[str], list[int], list[int]]:
    return ids, [debits.get(i, 0) for i in ids], [credits.get(i, 0) for i in ids]


async def get_balance(conn: asyncpg.Connection, account_id: str) -> Balance | None:
    row = await conn.fetchrow(
        "SELECT b.*, a.type, a.asset FROM balances b JOIN accounts a ON a.id = b.account_id WHERE b.account_id = $1",
        account_id,
    )
    return _balance(row) if row else None


def _balance(row: asyncpg.Record) -> Balance:
    return Balance(
        account_id=row["account_id"],
        type=row["type"],
        asset=row["asset"],
        debits_posted=row["debits_posted"],
        credits_posted=row["credits_posted"],
        debits_pending=row["debits_pending"],
        credits_pending=row["credits_pending"],
        version=row["version"],
    )


async def usage_burned(conn: asyncpg.Connection, account_id: str, start: datetime, end: datetime) -> int:
    """Units burned from the account's credits by usage whose business time is in [start, end)."""
    burned: int = await conn.fetchval(
        "SELECT coalesce(sum(p.amount), 0)::bigint FROM postings p JOIN journal_transactions t ON t.id = p.tx_id "
        "WHERE t.kind = 'usage' AND p.account_id = $1 AND p.amount > 0 "
        "  AND t.business_time >= $2 AND t.business_time < $3",
        account_id,
        start,
        end,
    )
    return burned
