"""A unit of work on the ledger: one PostgreSQL transaction's entries, holds and balances.

Every write to the ledger goes through a Book. Opening one locks the chain head, so
writers take turns: that gives the journal one order for its hash chain, makes the
idempotency check exact, and lets a Book decide against balances nobody else is
changing. It costs one lock per database transaction, which is why usage burns and
transfers are batched: a Book holds many entries.

A Book simulates each change on the balances it loaded and refuses one that would
break an account's flags (`Rejected`), leaving everything else in the Book intact.
`flush` writes it all: journal rows with their hashes, postings, balance deltas,
and the new balances and alerts into the outbox. The database checks the same
rules again (balanced transactions, flags), so a bug here cannot commit bad money.

A use case posts all its entries, then flushes once, then writes what refers to the
entries it booked (grants, holds). If it is refused half way, `discard` forgets what it
posted, so the next use case in the same Book starts from what was flushed.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import asyncpg

from tollgate_shared import outbox
from tollgate_shared.contracts import BalanceAlert, BalanceUpdated, Event, Topic, event_id_for
from tollgate_shared.contracts.envelope import utcnow
from tollgate_shared.contracts.topics import LEDGER_ALERTS, LEDGER_BALANCES

from .domain import (
    Account,
    Balance,
    ChainedRecord,
    Entry,
    Movement,
    Rejected,
    alert_for,
    alert_state,
    booking_period,
    chain_hash,
    posted_movements,
)


@dataclass(frozen=True)
class Booked:
    tx_id: int
    seq: int


class Book:
    def __init__(
        self, conn: asyncpg.Connection, seq: int, head: bytes, last_closed: str | None, threshold: int
    ) -> None:
        self.conn = conn
        self.now = utcnow()
        self._seq, self._head, self._last_closed = seq, head, last_closed
        self._default_threshold = threshold
        self._loaded: dict[str, Balance] = {}
        self._balances: dict[str, Balance] = {}
        self._entries: list[Entry] = []
        self._keys: set[str] = set()

    @classmethod
    async def open(cls, conn: asyncpg.Connection, *, low_balance_threshold: int = 0) -> "Book":
        """Start a Book inside `conn`'s open transaction, taking the chain lock."""
        head = await conn.fetchrow("SELECT seq, hash FROM chain_head FOR UPDATE")
        last_closed = await conn.fetchval("SELECT max(period) FROM periods")
        return cls(conn, head["seq"], bytes(head["hash"]), last_closed, low_balance_threshold)

    # --- reading ---------------------------------------------------------------------

    async def load(self, accounts: Iterable[Account]) -> None:
        """Make sure these accounts exist and their balances are in the Book."""
        missing = {a.id: a for a in accounts if a.id not in self._balances}
        if not missing:
            return
        new = sorted(missing.values(), key=lambda a: a.id)
        await self.conn.executemany(
            "INSERT INTO accounts (id, owner, owner_kind, type, asset, flags, spend_rule) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
            [(a.id, a.owner, a.owner_kind, a.type, a.asset, list(a.flags), a.spend_rule) for a in new],
        )
        await self.conn.executemany(
            "INSERT INTO balances (account_id, credit_normal, no_overdraft, no_positive, closed) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            [
                (a.id, a.credit_normal, "no_overdraft" in a.flags, "no_positive" in a.flags, "closed" in a.flags)
                for a in new
            ],
        )
        await self.load_ids(missing)

    async def load_ids(self, account_ids: Iterable[str]) -> None:
        """Load existing accounts by id (for operations naming accounts, not creating them)."""
        ids = [i for i in set(account_ids) if i not in self._balances]
        if ids:
            rows = await self.conn.fetch(BALANCE_QUERY + " WHERE b.account_id = ANY($1::text[])", ids)
            self._remember([balance_from(row) for row in rows])

    def balance(self, account_id: str) -> Balance:
        return self._balances[account_id]

    def has(self, account_id: str) -> bool:
        return account_id in self._balances

    async def booked(self, keys: Iterable[str]) -> set[str]:
        """Which of these idempotency keys are already in the journal or in this Book."""
        keys = list(keys)
        if not keys:
            return set()
        rows = await self.conn.fetch(
            "SELECT idempotency_key FROM journal_transactions WHERE idempotency_key = ANY($1::text[])", keys
        )
        return {r["idempotency_key"] for r in rows} | (self._keys & set(keys))

    # --- changing --------------------------------------------------------------------

    def move(self, movements: Iterable[Movement]) -> None:
        """Apply movements to the Book's balances, all or none. Flags are checked on each
        account's final state, as the database checks them at the end of the statement."""
        changed: dict[str, Balance] = {}
        for m in movements:
            changed[m.account_id] = changed.get(m.account_id, self._balances[m.account_id]).moved(m)
        for account_id, balance in changed.items():
            if problem := balance.violation():
                raise Rejected(problem, f"{account_id}: refused ({problem})")
        self._balances.update(changed)

    def count_usage(self, account_id: str, units: int) -> None:
        """Record that `units` of usage were booked against this (credits) account."""
        b = self._balances[account_id]
        self._balances[account_id] = replace(b, usage_total=b.usage_total + units)

    def post(self, entry: Entry, holds: Iterable[Movement] = ()) -> None:
        """Add a journal entry (and any hold changes that go with it), all or none."""
        if entry.idempotency_key in self._keys:
            raise Rejected("duplicate", f"{entry.idempotency_key} is already in this book")
        self.move([*posted_movements(entry.postings), *holds])
        self._entries.append(entry)
        self._keys.add(entry.idempotency_key)

    def discard(self) -> None:
        """Forget everything posted or moved since the last flush."""
        self._keys -= {e.idempotency_key for e in self._entries}
        self._entries = []
        self._balances = dict(self._loaded)

    # --- writing ---------------------------------------------------------------------

    async def flush(self) -> dict[str, Booked]:
        """Write everything; returns each entry's journal id by idempotency key."""
        booked = await self._write_journal()
        changed = await self._write_balances()
        alerts = await self._write_alert_states(changed)
        await outbox.add_many(self.conn, self._events(changed, alerts))
        self._entries = []
        return booked

    async def _write_journal(self) -> dict[str, Booked]:
        if not self._entries:
            return {}
        rows: list[tuple[ChainedRecord, bytes, bytes]] = []
        for entry in self._entries:
            self._seq += 1
            record = ChainedRecord(
                seq=self._seq,
                idempotency_key=entry.idempotency_key,
                kind=entry.kind,
                business_time=entry.business_time,
                created_at=self.now,
                period=booking_period(entry.business_time, self._last_closed),
                source_ref=entry.source_ref,
                reverses=entry.reverses,
                postings=tuple((p.account.id, p.account.asset, p.amount) for p in entry.postings),
            )
            prev, self._head = self._head, chain_hash(self._head, record)
            rows.append((record, prev, self._head))
        ids = await self.conn.fetch(
            "INSERT INTO journal_transactions "
            "  (seq, idempotency_key, kind, business_time, created_at, period, source_ref, reverses, prev_hash, hash) "
            "SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], "
            "  $6::text[], $7::text[], $8::bigint[], $9::bytea[], $10::bytea[]) RETURNING id, seq",
            *_columns(
                [
                    (
                        r.seq,
                        r.idempotency_key,
                        r.kind,
                        r.business_time,
                        r.created_at,
                        r.period,
                        r.source_ref,
                        r.reverses,
                        prev,
                        h,
                    )
                    for r, prev, h in rows
                ],
                10,
            ),
        )
        tx_of_seq = {r["seq"]: r["id"] for r in ids}
        postings = [
            (tx_of_seq[record.seq], account, asset, amount)
            for record, _, _ in rows
            for account, asset, amount in record.postings
        ]
        await self.conn.execute(
            "INSERT INTO postings (tx_id, account_id, asset, amount) "
            "SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[])",
            *_columns(postings, 4),
        )
        await self.conn.execute("UPDATE chain_head SET seq = $1, hash = $2", self._seq, self._head)
        return {r.idempotency_key: Booked(tx_of_seq[r.seq], r.seq) for r, _, _ in rows}

    async def _write_balances(self) -> list[Balance]:
        deltas = [
            (
                account_id,
                new.debits_posted - old.debits_posted,
                new.credits_posted - old.credits_posted,
                new.debits_pending - old.debits_pending,
                new.credits_pending - old.credits_pending,
                new.usage_total - old.usage_total,
            )
            for account_id in sorted(self._balances)
            if (new := self._balances[account_id]) != (old := self._loaded[account_id])
        ]
        if not deltas:
            return []
        rows = await self.conn.fetch(
            "UPDATE balances b SET debits_posted = b.debits_posted + d.dp, credits_posted = b.credits_posted + d.cp, "
            "  debits_pending = b.debits_pending + d.dq, credits_pending = b.credits_pending + d.cq, "
            "  usage_total = b.usage_total + d.u, version = b.version + 1 "
            "FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[]) "
            "  AS d(id, dp, cp, dq, cq, u) "
            "WHERE b.account_id = d.id RETURNING b.account_id, b.version",
            *_columns(deltas, 6),
        )
        changed = [replace(self._balances[row["account_id"]], version=row["version"]) for row in rows]
        self._remember(changed)
        return changed

    def _threshold(self, b: Balance) -> int | None:
        """Alerts watch spendable credit balances: a customer's, in a credit unit (not money)."""
        if b.owner_kind == "system" or b.type != "liability" or "/" in b.asset:
            return None
        return b.low_balance_threshold if b.low_balance_threshold is not None else self._default_threshold

    async def _write_alert_states(self, changed: list[Balance]) -> list[tuple[Balance, str, int]]:
        """The alerts these balances raise; their new states are kept, in the database and
        in the Book, so a later flush of the same Book does not announce them again."""
        alerts: list[tuple[Balance, str, int]] = []
        moved: list[Balance] = []
        for b in changed:
            threshold = self._threshold(b)
            if threshold is None:
                continue
            state = alert_state(b.available, threshold)
            if (kind := alert_for(b.alert_state, state)) is not None:
                alerts.append((b, kind, threshold))
                moved.append(replace(b, alert_state=state))
        if moved:
            await self.conn.executemany(
                "UPDATE balances SET alert_state = $2 WHERE account_id = $1",
                [(b.account_id, b.alert_state) for b in moved],
            )
            self._remember(moved)
        return alerts

    def _remember(self, balances: list[Balance]) -> None:
        """These are now the balances as written."""
        for b in balances:
            self._loaded[b.account_id] = self._balances[b.account_id] = b

    def _events(self, changed: list[Balance], alerts: list[tuple[Balance, str, int]]) -> list[tuple[Topic, str, Event]]:
        events: list[tuple[Topic, str, Event]] = [
            (LEDGER_BALANCES, b.account_id, balance_event(b)) for b in changed if b.owner_kind != "system"
        ]
        for b, kind, threshold in alerts:
            alert = BalanceAlert(
                event_id=event_id_for("BalanceAlert", b.account_id, str(b.version)),
                ledger_account=b.account_id,
                account_id=b.owner,
                asset=b.asset,
                alert=kind,  # type: ignore[arg-type]
                available=b.available,
                threshold=threshold,
                version=b.version,
            )
            events.append((LEDGER_ALERTS, b.owner, alert))
        return events


BALANCE_QUERY = (
    "SELECT b.account_id, a.owner, a.owner_kind, a.type, a.asset, a.flags, a.spend_rule, a.low_balance_threshold, "
    "  b.debits_posted, b.credits_posted, b.debits_pending, b.credits_pending, b.version, b.alert_state, "
    "  b.usage_total "
    "FROM balances b JOIN accounts a ON a.id = b.account_id"
)


def balance_from(row: asyncpg.Record) -> Balance:
    return Balance(
        account_id=row["account_id"],
        owner=row["owner"],
        type=row["type"],
        asset=row["asset"],
        debits_posted=row["debits_posted"],
        credits_posted=row["credits_posted"],
        debits_pending=row["debits_pending"],
        credits_pending=row["credits_pending"],
        version=row["version"],
        spend_rule=row["spend_rule"],
        owner_kind=row["owner_kind"],
        low_balance_threshold=row["low_balance_threshold"],
        alert_state=row["alert_state"],
        flags=tuple(row["flags"]),
        usage_total=row["usage_total"],
    )


def balance_event(b: Balance) -> BalanceUpdated:
    return BalanceUpdated(
        event_id=event_id_for("BalanceUpdated", b.account_id, str(b.version)),
        ledger_account=b.account_id,
        account_id=b.owner,
        asset=b.asset,
        debits_posted=b.debits_posted,
        credits_posted=b.credits_posted,
        debits_pending=b.debits_pending,
        credits_pending=b.credits_pending,
        current=b.current,
        pending=b.pending,
        available=b.available,
        available_conservative=b.available_conservative,
        available_optimistic=b.available_optimistic,
        spend_rule=b.spend_rule,
        usage_total=b.usage_total if b.account_id.endswith(":credits") else None,
        version=b.version,
    )


def _columns(rows: Sequence[tuple[object, ...]], width: int) -> list[list[object]]:
    """Row tuples to per-column lists, for unnest()."""
    return [list(col) for col in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]
