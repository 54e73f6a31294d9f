"""The ledger's SQL beyond the Book's own: grants, holds, accounts, and the reads behind
balances, statements and the trial balance."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from .book import BALANCE_QUERY, balance_from
from .domain import CREDIT_NORMAL, Balance, Grant, customer_credits, customer_overdrawn
from .recognition import Terms

# --- credit grants -----------------------------------------------------------------------


@dataclass(frozen=True)
class NewGrant:
    id: str
    ledger_account: str
    kind: str
    priority: int
    granted: int
    remaining: int
    granted_tx: int
    expires_at: datetime | None = None
    source_ref: str | None = None
    paid_minor: int | None = None
    currency: str | None = None


async def insert_grant(conn: asyncpg.Connection, g: NewGrant) -> None:
    await conn.execute(
        "INSERT INTO credit_grants (id, account_id, kind, priority, granted, remaining, expires_at, source_ref, "
        "  paid_minor, currency, granted_tx) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        g.id,
        g.ledger_account,
        g.kind,
        g.priority,
        g.granted,
        g.remaining,
        g.expires_at,
        g.source_ref,
        g.paid_minor,
        g.currency,
        g.granted_tx,
    )


async def live_grants(conn: asyncpg.Connection, ledger_accounts: list[str]) -> dict[str, list[Grant]]:
    """The accounts' grants with credits left, locked for this transaction."""
    rows = await conn.fetch(
        "SELECT id, account_id, priority, remaining, expires_at FROM credit_grants "
        "WHERE account_id = ANY($1::text[]) AND remaining > 0 ORDER BY id FOR UPDATE",
        ledger_accounts,
    )
    out: dict[str, list[Grant]] = {a: [] for a in ledger_accounts}
    for r in rows:
        out[r["account_id"]].append(Grant(r["id"], r["priority"], r["remaining"], r["expires_at"]))
    return out


async def take_from_grants(conn: asyncpg.Connection, taken: dict[str, int]) -> None:
    if taken:
        await conn.execute(
            "UPDATE credit_grants g SET remaining = g.remaining - t.units "
            "FROM unnest($1::text[], $2::bigint[]) AS t(id, units) WHERE g.id = t.id",
            list(taken),
            list(taken.values()),
        )


async def paid_grant(conn: asyncpg.Connection, payment_ref: str) -> asyncpg.Record | None:
    """The paid grant a payment bought, locked: refunds and lost disputes change it."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT id, account_id, granted, remaining, paid_minor, refunded_minor, disputed_minor, granted_tx, "
        "  paid_minor - recognised_minor - returned_minor AS prepaid_left "
        "FROM credit_grants WHERE source_ref = $1 AND kind = 'paid' FOR UPDATE",
        payment_ref,
    )
    return row


async def record_return(
    conn: asyncpg.Connection,
    grant_id: str,
    revoked: int,
    *,
    refunded: int = 0,
    disputed: int = 0,
    from_prepaid: int = 0,
) -> None:
    """Money returned to the customer from a paid grant, the credits it took back, and how
    much of that money came out of the grant's prepaid (not yet recognised) money."""
    await conn.execute(
        "UPDATE credit_grants SET remaining = remaining - $2, refunded_minor = refunded_minor + $3, "
        "  disputed_minor = disputed_minor + $4, returned_minor = returned_minor + $5 WHERE id = $1",
        grant_id,
        revoked,
        refunded,
        disputed,
        from_prepaid,
    )


async def due_grants(conn: asyncpg.Connection, now: datetime) -> list[asyncpg.Record]:
    """Grants past their expiry with credits left, locked (skipping any another sweep holds)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT id, account_id, remaining, expires_at, paid_minor FROM credit_grants "
        "WHERE remaining > 0 AND expires_at <= $1 ORDER BY id FOR UPDATE SKIP LOCKED",
        now,
    )
    return rows


async def record_expiries(conn: asyncpg.Connection, expired: list[tuple[str, int, int]]) -> None:
    """(grant id, units, expiry entry's tx id) for each grant that ended."""
    await conn.executemany(
        "UPDATE credit_grants SET remaining = remaining - $2, expired_tx = $3 WHERE id = $1", expired
    )


# --- holds (two-phase transfers) ---------------------------------------------------------


async def existing_holds(conn: asyncpg.Connection, ids: list[str]) -> set[str]:
    if not ids:
        return set()
    rows = await conn.fetch("SELECT id FROM pending_transfers WHERE id = ANY($1::text[])", ids)
    return {r["id"] for r in rows}


async def insert_holds(conn: asyncpg.Connection, holds: list[tuple[object, ...]]) -> None:
    """(id, debit, credit, asset, amount, kind, source_ref, expires_at) for each new hold."""
    await conn.executemany(
        "INSERT INTO pending_transfers "
        "  (id, debit_account, credit_account, asset, amount, kind, source_ref, expires_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        holds,
    )


async def hold_for_update(conn: asyncpg.Connection, hold_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT * FROM pending_transfers WHERE id = $1 FOR UPDATE", hold_id
    )
    return row


async def due_holds(conn: asyncpg.Connection, now: datetime) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT * FROM pending_transfers WHERE state = 'pending' AND expires_at <= $1 ORDER BY id FOR UPDATE",
        now,
    )
    return rows


async def resolve_holds(conn: asyncpg.Connection, resolved: list[tuple[str, str, int, datetime, int | None]]) -> None:
    """(id, state, posted amount, when, tx id) for each hold posted, voided or expired."""
    await conn.executemany(
        "UPDATE pending_transfers SET state = $2, posted_amount = $3, resolved_at = $4, resolved_tx = $5 WHERE id = $1",
        resolved,
    )


# --- accounts and the journal ------------------------------------------------------------


async def account_exists(conn: asyncpg.Connection, account_id: str) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM accounts WHERE id = $1)", account_id))


async def set_low_balance_threshold(conn: asyncpg.Connection, account_id: str, threshold: int) -> None:
    await conn.execute("UPDATE accounts SET low_balance_threshold = $2 WHERE id = $1", account_id, threshold)


async def update_settings(
    conn: asyncpg.Connection, account_id: str, threshold: int | None, spend_rule: str | None
) -> bool:
    updated = await conn.fetchval(
        "UPDATE accounts SET low_balance_threshold = coalesce($2, low_balance_threshold), "
        "  spend_rule = coalesce($3, spend_rule) WHERE id = $1 RETURNING id",
        account_id,
        threshold,
        spend_rule,
    )
    return updated is not None


async def mark_closed(conn: asyncpg.Connection, account_id: str) -> None:
    await conn.execute(
        "UPDATE accounts SET flags = array_append(flags, 'closed') WHERE id = $1 AND NOT 'closed' = ANY(flags)",
        account_id,
    )
    await conn.execute("UPDATE balances SET closed = true WHERE account_id = $1", account_id)


async def journal_entry(conn: asyncpg.Connection, tx_id: int) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT id, kind, idempotency_key FROM journal_transactions WHERE id = $1", tx_id
    )
    return row


async def tx_of(conn: asyncpg.Connection, idempotency_key: str) -> int | None:
    found = await conn.fetchval("SELECT id FROM journal_transactions WHERE idempotency_key = $1", idempotency_key)
    return int(found) if found is not None else None


async def postings_of(conn: asyncpg.Connection, tx_id: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT account_id, amount FROM postings WHERE tx_id = $1 ORDER BY id", tx_id
    )
    return rows


async def journal_seq(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT seq FROM chain_head"))


# --- reads -------------------------------------------------------------------------------


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
    opening: int  # net debit (positive) or credit (negative) before the period
    debits: int
    credits: int

    @property
    def closing(self) -> int:
        """Net debit (positive) or credit (negative) at the end."""
        return self.opening + self.debits - self.credits


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
        """Per asset whose debits and credits differ, or whose openings do not sum to zero."""
        openings: dict[str, int] = defaultdict(int)
        for r in self.rows:
            openings[r.asset] += r.opening
        return {asset: d - c + openings[asset] for asset, (d, c) in self.totals().items() if d != c or openings[asset]}


async def trial_balance(
    conn: asyncpg.Connection, *, as_of: datetime | None = None, period: str | None = None
) -> TrialBalance:
    """Every account's opening balance, debits, credits and closing balance, from the
    postings themselves (not the running totals, so it also checks them): through
    `period` (opening: before it; debits and credits: in it), or everything before
    `as_of` (or ever), from nothing."""
    in_range, before, args = "true", "false", list[object]()
    if as_of is not None:
        in_range, args = "t.business_time < $1", [as_of]
    elif period is not None:
        in_range, before, args = "t.period = $1", "t.period < $1", [period]
    rows = await conn.fetch(
        "SELECT a.id, a.type, a.asset, "
        f"  coalesce(sum(p.amount) FILTER (WHERE {before}), 0)::bigint AS opening, "
        f"  coalesce(sum(p.amount) FILTER (WHERE {in_range} AND p.amount > 0), 0)::bigint AS debits, "
        f"  coalesce(-sum(p.amount) FILTER (WHERE {in_range} AND p.amount < 0), 0)::bigint AS credits "
        "FROM postings p JOIN journal_transactions t ON t.id = p.tx_id JOIN accounts a ON a.id = p.account_id "
        f"WHERE ({before}) OR ({in_range}) GROUP BY a.id, a.type, a.asset ORDER BY a.asset, a.id",
        *args,
    )
    return TrialBalance(
        [TrialBalanceRow(r["id"], r["type"], r["asset"], r["opening"], r["debits"], r["credits"]) for r in rows]
    )


async def grants_of(conn: asyncpg.Connection, ledger_account: str) -> list[asyncpg.Record]:
    """Every grant of the account's credits, those with credits left first, soonest to end first."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT id, kind, granted, remaining, expires_at FROM credit_grants WHERE account_id = $1 "
        "ORDER BY remaining = 0, expires_at NULLS LAST, id",
        ledger_account,
    )
    return rows


async def paid_terms(conn: asyncpg.Connection, grant_ids: list[str]) -> dict[str, Terms]:
    """What each paid grant among `grant_ids` was sold for, and has recognised so far."""
    rows = await conn.fetch(
        "SELECT id, paid_minor, granted, currency, remaining, recognised_units, recognised_minor, returned_minor "
        "FROM credit_grants WHERE id = ANY($1::text[]) AND paid_minor > 0",
        grant_ids,
    )
    return {
        r["id"]: Terms(
            r["id"], r["paid_minor"], r["granted"], r["currency"], r["remaining"], r["recognised_units"],
            r["recognised_minor"], r["returned_minor"],
        )
        for r in rows
    }  # fmt: skip


async def record_recognition(conn: asyncpg.Connection, done: dict[str, tuple[int, int]]) -> None:
    if done:
        await conn.execute(
            "UPDATE credit_grants g SET recognised_units = g.recognised_units + d.units, "
            "recognised_minor = g.recognised_minor + d.minor "
            "FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS d(id, units, minor) WHERE g.id = d.id",
            list(done),
            [u for u, _ in done.values()],
            [m for _, m in done.values()],
        )
