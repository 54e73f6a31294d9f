"""The ledger's reads: balances, usage burned, statements, the trial balance."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from .book import BALANCE_QUERY, balance_from
from .domain import CREDIT_NORMAL, Balance, customer_credits, customer_overdrawn


async def balance(conn: asyncpg.Connection, ledger_account: str) -> Balance | None:
    row = await conn.fetchrow(BALANCE_QUERY + " WHERE b.account_id = $1", ledger_account)
    return balance_from(row) if row else None


async def balances_of(conn: asyncpg.Connection, owner: str) -> list[Balance]:
    rows = await conn.fetch(BALANCE_QUERY + " WHERE a.owner = $1 ORDER BY b.account_id", owner)
    return [balance_from(r) for r in rows]


async def usage_burned(conn: asyncpg.Connection, account_id: str, start: datetime, end: datetime) -> int:
    """Units of usage booked for the customer with business time in [start, end), whether
    burned from credits or beyond them (overdrawn)."""
    burned: int = await conn.fetchval(
        "SELECT coalesce(sum(p.amount), 0)::bigint FROM postings p JOIN journal_transactions t ON t.id = p.tx_id "
        "WHERE t.kind = 'usage' AND p.account_id = ANY($1::text[]) AND p.amount > 0 "
        "  AND t.business_time >= $2 AND t.business_time < $3",
        [customer_credits(account_id).id, customer_overdrawn(account_id).id],
        start,
        end,
    )
    return burned


@dataclass(frozen=True)
class StatementLine:
    tx_id: int
    seq: int
    business_time: datetime
    kind: str
    amount: int  # in the account's normal direction
    balance: int
    source_ref: str | None


@dataclass(frozen=True)
class Statement:
    account_id: str
    asset: str
    opening: int
    lines: list[StatementLine]

    @property
    def closing(self) -> int:
        return self.lines[-1].balance if self.lines else self.opening


async def statement(conn: asyncpg.Connection, account_id: str, start: datetime, end: datetime) -> Statement | None:
    """Opening balance, every posting in [start, end) by business time, closing balance."""
    account = await conn.fetchrow("SELECT type, asset FROM accounts WHERE id = $1", account_id)
    if account is None:
        return None
    sign = 1 if account["type"] in CREDIT_NORMAL else -1
    opening = sign * -await conn.fetchval(
        "SELECT coalesce(sum(p.amount), 0)::bigint FROM postings p JOIN journal_transactions t ON t.id = p.tx_id "
        "WHERE p.account_id = $1 AND t.business_time < $2",
        account_id,
        start,
    )
    rows = await conn.fetch(
        "SELECT t.id, t.seq, t.business_time, t.kind, t.source_ref, p.amount FROM postings p "
        "JOIN journal_transactions t ON t.id = p.tx_id "
        "WHERE p.account_id = $1 AND t.business_time >= $2 AND t.business_time < $3 ORDER BY t.business_time, t.seq",
        account_id,
        start,
        end,
    )
    running, lines = opening, []
    for r in rows:
        running += sign * -r["amount"]
        lines.append(
            StatementLine(
                r["id"], r["seq"], r["business_time"], r["kind"], sign * -r["amount"], running, r["source_ref"]
            )
        )
    return Statement(account_id, account["asset"], opening, lines)


@dataclass(frozen=True)
class TrialBalanceRow:
    account_id: str
    type: str
    asset: str
    debits: int
    credits: int

    @property
    def balance(self) -> int:
        """Net debit (positive) or credit (negative)."""
        return self.debits - self.credits


@dataclass(frozen=True)
class TrialBalance:
    rows: list[TrialBalanceRow]

    def totals(self) -> dict[str, tuple[int, int]]:
        """Per asset: (debits, credits). Double entry says they are equal."""
        out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for r in self.rows:
            out[r.asset][0] += r.debits
            out[r.asset][1] += r.credits
        return {asset: (d, c) for asset, (d, c) in sorted(out.items())}

    def off_balance(self) -> dict[str, int]:
        return {asset: d - c for asset, (d, c) in self.totals().items() if d != c}


async def trial_balance(
    conn: asyncpg.Connection, *, as_of: datetime | None = None, period: str | None = None
) -> TrialBalance:
    """Every account's posted debits and credits, from the postings themselves (not the
    running totals, so it also checks them), up to `as_of` or through `period`."""
    where, args = "true", list[object]()
    if as_of is not None:
        where, args = "t.business_time < $1", [as_of]
    elif period is not None:
        where, args = "t.period <= $1", [period]
    rows = await conn.fetch(
        "SELECT a.id, a.type, a.asset, "
        "  coalesce(sum(p.amount) FILTER (WHERE p.amount > 0), 0)::bigint AS debits, "
        "  coalesce(-sum(p.amount) FILTER (WHERE p.amount < 0), 0)::bigint AS credits "
        f"FROM postings p JOIN journal_transactions t ON t.id = p.tx_id JOIN accounts a ON a.id = p.account_id "
        f"WHERE {where} GROUP BY a.id, a.type, a.asset ORDER BY a.asset, a.id",
        *args,
    )
    return TrialBalance([TrialBalanceRow(r["id"], r["type"], r["asset"], r["debits"], r["credits"]) for r in rows])
