"""For finance: the deferred-revenue roll-forward, period close, and verifying the chain
and the totals (exports.py streams the journal)."""

from dataclasses import dataclass, field

import asyncpg

from .book import Book
from .domain import ChainedRecord, chain_hash, next_period, period_bounds

# --- revenue -------------------------------------------------------------------------

# The accounts of customers' prepaid money (domain.customer_prepaid), and the revenue
# recognised from it (domain.revenue_from_usage / revenue_from_expiry).
IS_PREPAID = "a.id = 'customer:' || a.owner || ':prepaid:' || a.asset"
IS_RECOGNISED_REVENUE = "a.id IN ('system:revenue_from_usage:' || a.asset, 'system:revenue_from_expiry:' || a.asset)"
# What each kind of journal entry does to the customers' prepaid money (deferred revenue).
PREPAYMENTS = ("purchase", "top_up")
RECOGNISED_FROM_USAGE = ("usage", "overdraft_settlement")
RECOGNISED_FROM_EXPIRY = ("grant_expiry",)
CORRECTIONS = ("transfer", "reversal", "correction", "manual_adjustment_transfer")  # an operator's, by hand
EXPLAINED = (*PREPAYMENTS, *RECOGNISED_FROM_USAGE, *RECOGNISED_FROM_EXPIRY, "refund", "dispute_loss", *CORRECTIONS)


@dataclass(frozen=True)
class RollForward:
    """One currency's deferred revenue through a period, in minor units (credit balances
    positive): opening + prepayments - recognised - refunds - disputes lost + corrections
    = closing."""

    period: str
    asset: str
    opening: int
    prepayments: int
    recognised_usage: int
    recognised_expiry: int
    refunds: int
    disputes_lost: int
    corrections: int
    unexplained: int  # moved by an entry of a kind that should never touch prepaid money
    prepaid_closing: int  # what the prepaid liability accounts hold at the period's end
    revenue_booked: int  # what the revenue accounts were credited in the period
    closed_opening: int | None = None  # the previous period's closing as its close stamped it
    problems: list[str] = field(default_factory=list)

    @property
    def recognised(self) -> int:
        return self.recognised_usage + self.recognised_expiry

    @property
    def closing(self) -> int:
        return self.opening + self.prepayments - self.recognised - self.refunds - self.disputes_lost + self.corrections

    @property
    def tied(self) -> bool:
        return not self.problems


async def revenue(conn: asyncpg.Connection, period: str) -> list[RollForward]:
    """The deferred-revenue roll-forward of `period`, per currency, tied out: the
    roll-forward's closing equals the prepaid accounts' balance, the revenue accounts
    were credited exactly what was recognised, no entry of an unexpected kind moved
    prepaid money, and the opening is what the last close stamped."""
    in_period = "period = $1 AND kind = ANY"
    rows = await conn.fetch(
        "WITH prepaid AS ("
        "  SELECT p.asset, t.period, t.kind, -p.amount AS credit FROM postings p "
        "  JOIN journal_transactions t ON t.id = p.tx_id JOIN accounts a ON a.id = p.account_id "
        f"  WHERE {IS_PREPAID} AND t.period <= $1), "
        "revenue AS ("
        "  SELECT p.asset, -sum(p.amount)::bigint AS credited FROM postings p "
        "  JOIN journal_transactions t ON t.id = p.tx_id JOIN accounts a ON a.id = p.account_id "
        f"  WHERE {IS_RECOGNISED_REVENUE} AND t.period = $1 GROUP BY p.asset), "
        "closed AS ("
        "  SELECT pb.asset, -sum(pb.closing)::bigint AS closing "
        "  FROM period_balances pb JOIN accounts a ON a.id = pb.account_id "
        "  WHERE pb.period = (SELECT max(period) FROM periods WHERE period < $1) "
        f"    AND {IS_PREPAID} GROUP BY pb.asset) "
        "SELECT x.asset, "
        "  coalesce(sum(credit) FILTER (WHERE period < $1), 0)::bigint AS opening, "
        f"  coalesce(sum(credit) FILTER (WHERE {in_period}($2::text[])), 0)::bigint AS prepayments, "
        f"  coalesce(-sum(credit) FILTER (WHERE {in_period}($3::text[])), 0)::bigint AS recognised_usage, "
        f"  coalesce(-sum(credit) FILTER (WHERE {in_period}($4::text[])), 0)::bigint AS recognised_expiry, "
        "  coalesce(-sum(credit) FILTER (WHERE period = $1 AND kind = 'refund'), 0)::bigint AS refunds, "
        "  coalesce(-sum(credit) FILTER (WHERE period = $1 AND kind = 'dispute_loss'), 0)::bigint AS disputes_lost, "
        f"  coalesce(sum(credit) FILTER (WHERE {in_period}($5::text[])), 0)::bigint AS corrections, "
        "  coalesce(sum(credit) FILTER (WHERE period = $1 AND NOT kind = ANY($6::text[])), 0)::bigint AS unexplained, "
        "  coalesce(sum(credit), 0)::bigint AS prepaid_closing, "
        "  coalesce(max(r.credited), 0)::bigint AS revenue_booked, max(c.closing) AS closed_opening "
        "FROM (SELECT asset FROM prepaid UNION SELECT asset FROM revenue) x "
        "LEFT JOIN prepaid USING (asset) LEFT JOIN revenue r ON r.asset = x.asset "
        "LEFT JOIN closed c ON c.asset = x.asset "
        "GROUP BY x.asset ORDER BY x.asset",
        period,
        list(PREPAYMENTS),
        list(RECOGNISED_FROM_USAGE),
        list(RECOGNISED_FROM_EXPIRY),
        list(CORRECTIONS),
        list(EXPLAINED),
    )
    out = []
    for r in rows:
        rf = RollForward(
            period, r["asset"], r["opening"], r["prepayments"], r["recognised_usage"], r["recognised_expiry"],
            r["refunds"], r["disputes_lost"], r["corrections"], r["unexplained"], r["prepaid_closing"],
            r["revenue_booked"], r["closed_opening"],
        )  # fmt: skip
        rf.problems.extend(_tie_out(rf))
        out.append(rf)
    return out


def _tie_out(rf: RollForward) -> list[str]:
    problems = []
    if rf.closing != rf.prepaid_closing:
        problems.append(
            f"{rf.asset}: the roll-forward closes at {rf.closing}, prepaid accounts hold {rf.prepaid_closing}"
        )
    if rf.recognised != rf.revenue_booked:
        problems.append(f"{rf.asset}: {rf.recognised} recognised from prepaid, {rf.revenue_booked} booked as revenue")
    if rf.unexplained:
        problems.append(f"{rf.asset}: {rf.unexplained} of prepaid money moved by entries that should not move it")
    if rf.closed_opening is not None and rf.closed_opening != rf.opening:
        problems.append(f"{rf.asset}: opening {rf.opening}, but the last close stamped {rf.closed_opening}")
    return problems


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
    untied = [problem for rf in await revenue(conn, period) for problem in rf.problems]
    if untied:
        raise CloseRefused(f"the deferred-revenue roll-forward does not tie: {'; '.join(untied)}")
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

# The sub-ledger against the ledger: what each customer's paid grants have not yet
# recognised or returned is exactly what their prepaid account holds, per currency.
DEFERRED_BY_GRANTS = (
    "WITH deferred AS ("
    "  SELECT a.owner, upper(g.currency) AS currency, "
    "    sum(g.paid_minor - g.recognised_minor - g.returned_minor)::bigint AS deferred "
    "  FROM credit_grants g JOIN accounts a ON a.id = g.account_id WHERE g.paid_minor > 0 "
    "  GROUP BY a.owner, upper(g.currency)), "
    "held AS ("
    "  SELECT a.owner, split_part(a.asset, '/', 1) AS currency, b.credits_posted - b.debits_posted AS held "
    "  FROM accounts a JOIN balances b ON b.account_id = a.id "
    f"  WHERE {IS_PREPAID}) "
    "SELECT coalesce(d.owner, h.owner) AS owner, coalesce(d.currency, h.currency) AS currency, "
    "  coalesce(d.deferred, 0) AS deferred, coalesce(h.held, 0) AS held "
    "FROM deferred d FULL JOIN held h ON h.owner = d.owner AND h.currency = d.currency "
    "WHERE coalesce(d.deferred, 0) <> coalesce(h.held, 0) ORDER BY 1, 2"
)


async def verify(conn: asyncpg.Connection, *, chunk: int = 5000) -> list[str]:
    """Recompute the hash chain from the journal, check the running totals against the
    postings and the paid grants' deferred money against the prepaid accounts; returns
    every problem found (none when the book is intact)."""
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
        for r in await conn.fetch(DEFERRED_BY_GRANTS):
            problems.append(
                f"{r['owner']} {r['currency']}: paid grants leave {r['deferred']} deferred, "
                f"the prepaid account holds {r['held']}"
            )
        for r in await conn.fetch(
            "SELECT tx_id, asset FROM postings GROUP BY tx_id, asset HAVING sum(amount) <> 0 ORDER BY tx_id"
        ):
            problems.append(f"tx {r['tx_id']}: {r['asset']} postings do not sum to zero")
    return problems
