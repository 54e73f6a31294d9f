"""The ledger's rules: accounts, balanced entries, balances, the chain. Pure: no I/O.

A prepaid pack: the customer pays USD into Stripe (our asset) and holds call credits
that are our liability until used. Using a call moves one credit to revenue.
Amounts are integers in the asset's smallest unit; a positive posting is a debit.
"""

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal

from tollgate_shared.contracts import credits_account, overdrawn_account, prepaid_account

AccountType = Literal["asset", "liability", "revenue", "expense", "equity"]
OwnerKind = Literal["customer", "subscription", "system"]
SpendRule = Literal["conservative", "optimistic"]
Flag = Literal["no_overdraft", "no_positive", "closed"]
CREDIT_NORMAL: frozenset[str] = frozenset({"liability", "revenue", "equity"})
CALLS = "CALLS"


@dataclass(frozen=True)
class Account:
    id: str
    owner: str
    type: AccountType
    asset: str
    flags: tuple[Flag, ...] = ()
    owner_kind: OwnerKind = "customer"
    spend_rule: SpendRule = "conservative"

    @property
    def credit_normal(self) -> bool:
        return self.type in CREDIT_NORMAL


@dataclass(frozen=True)
class Posting:
    account: Account
    amount: int  # positive: debit; negative: credit

    def __post_init__(self) -> None:
        if self.amount == 0:
            raise ValueError("a posting moves a non-zero amount")


class Unbalanced(ValueError):
    pass


class Rejected(Exception):
    """An operation the ledger refuses; nothing of it was applied."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def assert_balanced(postings: Iterable[Posting]) -> None:
    totals: dict[str, int] = defaultdict(int)
    count = 0
    for p in postings:
        totals[p.account.asset] += p.amount
        count += 1
    off = {asset: total for asset, total in totals.items() if total != 0}
    if off or not count:
        raise Unbalanced(f"postings do not sum to zero per asset: {off or 'no postings'}")


@dataclass(frozen=True)
class Entry:
    """One journal transaction: balanced postings booked once under `idempotency_key`."""

    idempotency_key: str
    kind: str
    business_time: datetime
    postings: tuple[Posting, ...]
    source_ref: str | None = None
    reverses: int | None = None

    def __post_init__(self) -> None:
        assert_balanced(self.postings)


# --- accounts -------------------------------------------------------------------------


def money_asset(currency: str) -> str:
    return f"{currency.upper()}/2"


def system_account(name: str, type_: AccountType, asset: str) -> Account:
    return Account(f"system:{name}:{asset}", "system", type_, asset, owner_kind="system")


def customer_credits(account_id: str) -> Account:
    """The customer's call credits. Spendable by the optimistic rule: the only pending
    inflows into it are top-ups being charged, which the customer may spend at once (as
    Moesif's pending activity); one that fails is voided, and what was spent of it is
    booked as overdrawn usage, owed."""
    return Account(
        credits_account(account_id), account_id, "liability", CALLS, ("no_overdraft",), spend_rule="optimistic"
    )


def customer_overdrawn(account_id: str) -> Account:
    """Calls used beyond the customer's credits: owed to us, booked, never hidden."""
    return Account(overdrawn_account(account_id), account_id, "asset", CALLS)


def customer_prepaid(account_id: str, currency: str) -> Account:
    asset = money_asset(currency)
    return Account(prepaid_account(account_id, asset), account_id, "liability", asset, ("no_overdraft",))


def stripe_clearing(currency: str) -> Account:
    return system_account("stripe_clearing", "asset", money_asset(currency))


def refunds_paid(currency: str) -> Account:
    """Money returned for credits the customer had already used."""
    return system_account("refunds_of_used_credits", "expense", money_asset(currency))


def dispute_losses(currency: str) -> Account:
    return system_account("dispute_losses", "expense", money_asset(currency))


def revenue_from_usage(currency: str) -> Account:
    """Money earned as prepaid credits are used (recognition.py)."""
    return system_account("revenue_from_usage", "revenue", money_asset(currency))


def revenue_from_expiry(currency: str) -> Account:
    """Money earned as paid credits expire unused (breakage)."""
    return system_account("revenue_from_expiry", "revenue", money_asset(currency))


def account_name(account_id: str) -> str:
    """What an account is, from the parts of its id (contracts/ledger.py names them)."""
    parts = account_id.split(":")
    if parts[0] == "customer" and len(parts) >= 3:
        whose = parts[1]
        match parts[2]:
            case "credits":
                return f"Call credits of {whose}"
            case "overdrawn":
                return f"Calls {whose} used beyond their credits"
            case "prepaid":
                return f"Money {whose} prepaid for credits ({parts[3] if len(parts) > 3 else ''})".replace(" ()", "")
    if parts[0] == "system" and len(parts) >= 2:
        return parts[1].replace("_", " ").capitalize()
    return account_id


CREDITS_ISSUED = system_account("credits_issued", "equity", CALLS)
CREDITS_CONSUMED = system_account("credits_consumed", "revenue", CALLS)
CREDITS_EXPIRED = system_account("credits_expired", "revenue", CALLS)
PROMOTIONS = system_account("promotional_credits", "expense", CALLS)
ADJUSTMENTS = system_account("manual_adjustments", "equity", CALLS)
REFUNDED_USAGE = system_account("refunded_usage", "expense", CALLS)  # calls refunded after they were used
DISPUTED_USAGE = system_account("disputed_usage", "expense", CALLS)  # calls a lost dispute took the money of


# --- balances -------------------------------------------------------------------------


@dataclass(frozen=True)
class Balance:
    account_id: str
    owner: str
    type: str
    asset: str
    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0
    version: int = 0
    spend_rule: SpendRule = "conservative"
    owner_kind: OwnerKind = "customer"
    low_balance_threshold: int | None = None
    alert_state: str = "ok"
    flags: tuple[str, ...] = ()
    usage_total: int = 0  # usage units booked against this account, for credits accounts

    @property
    def _sign(self) -> int:
        return 1 if self.type in CREDIT_NORMAL else -1

    @property
    def current(self) -> int:
        """Posted balance, in the account's normal direction."""
        return self._sign * (self.credits_posted - self.debits_posted)

    @property
    def pending(self) -> int:
        """Net pending activity (holds not yet posted, voided or expired)."""
        return self._sign * (self.credits_pending - self.debits_pending)

    @property
    def pending_outflow(self) -> int:
        return self.debits_pending if self._sign == 1 else self.credits_pending

    @property
    def available_conservative(self) -> int:
        """Posted less pending outflows: a hold that may yet be voided is not money."""
        return self.current - self.pending_outflow

    @property
    def available_optimistic(self) -> int:
        """Posted plus all pending activity, inflows included."""
        return self.current + self.pending

    @property
    def available(self) -> int:
        """What can be spent, by the account's own rule."""
        return self.available_conservative if self.spend_rule == "conservative" else self.available_optimistic

    @property
    def account(self) -> Account:
        return Account(self.account_id, self.owner, self.type, self.asset, self.flags, self.owner_kind, self.spend_rule)  # type: ignore[arg-type]

    def moved(self, m: "Movement") -> "Balance":
        return replace(
            self,
            debits_posted=self.debits_posted + m.debits_posted,
            credits_posted=self.credits_posted + m.credits_posted,
            debits_pending=self.debits_pending + m.debits_pending,
            credits_pending=self.credits_pending + m.credits_pending,
        )

    def violation(self) -> str | None:
        """Which flag this balance breaks, if any; the database checks the same rules."""
        if self._sign == 1:
            outflow, inflow = self.debits_posted + self.debits_pending, self.credits_posted
            inflow_all, outflow_posted = self.credits_posted + self.credits_pending, self.debits_posted
        else:
            outflow, inflow = self.credits_posted + self.credits_pending, self.debits_posted
            inflow_all, outflow_posted = self.debits_posted + self.debits_pending, self.credits_posted
        if "no_overdraft" in self.flags and outflow > inflow:
            return "overdraft"
        if "no_positive" in self.flags and inflow_all > outflow_posted:
            return "positive_balance"
        if "closed" in self.flags:
            return "account_closed"
        return None


@dataclass(frozen=True)
class Movement:
    """A change to one account's four totals."""

    account_id: str
    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0


def posted_movements(postings: Iterable[Posting]) -> list[Movement]:
    return [
        Movement(p.account.id, debits_posted=p.amount)
        if p.amount > 0
        else Movement(p.account.id, credits_posted=-p.amount)
        for p in postings
    ]


def hold_movements(debit: str, credit: str, amount: int) -> list[Movement]:
    """A hold of `amount` on two accounts (negative to release one)."""
    return [Movement(debit, debits_pending=amount), Movement(credit, credits_pending=amount)]


# --- alerts ---------------------------------------------------------------------------

AlertKind = Literal["low_balance", "exhausted", "replenished"]


def alert_state(available: int, threshold: int) -> str:
    if available <= 0:
        return "exhausted"
    return "low" if available < threshold else "ok"


def alert_for(previous_state: str, new_state: str) -> AlertKind | None:
    """The alert a move from one state to another announces; None if it announces nothing."""
    if new_state == previous_state:
        return None
    if new_state == "exhausted":
        return "exhausted"
    if new_state == "low":
        return "low_balance"
    return "replenished"


# --- credit grants --------------------------------------------------------------------

PROMOTIONAL_PRIORITY = 10  # burned first: free credits go before paid ones
PAID_PRIORITY = 100


@dataclass
class Grant:
    id: str
    priority: int
    remaining: int
    expires_at: datetime | None


def burn_order(grants: Iterable[Grant]) -> list[Grant]:
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(grants, key=lambda g: (g.priority, g.expires_at or far, g.id))


def allocate(grants: Iterable[Grant], units: int, now: datetime) -> tuple[dict[str, int], int]:
    """Take `units` from live grants in burn order: ({grant id: units}, units not covered).
    The grants' `remaining` go down as they are taken from, so a caller can allocate
    several times from one list."""
    taken: dict[str, int] = {}
    left = units
    for g in burn_order(grants):
        if left == 0:
            break
        if g.remaining <= 0 or (g.expires_at is not None and g.expires_at <= now):
            continue
        take = min(g.remaining, left)
        g.remaining -= take
        taken[g.id] = take
        left -= take
    return taken, left


def credits_revoked(granted: int, paid_minor: int, refunded_total: int, refunded_before: int) -> int:
    """The credits a refund takes back from a paid grant: the refunded share of what it
    granted. Cumulative, so the credits revoked by all refunds so far never drift from
    the refunded share, and a full refund revokes the grant exactly."""
    return (
        granted * min(refunded_total, paid_minor) // paid_minor
        - granted * min(refunded_before, paid_minor) // paid_minor
    )


# --- periods --------------------------------------------------------------------------


def period_of(t: datetime) -> str:
    t = t.astimezone(UTC)
    return f"{t.year:04d}-{t.month:02d}"


def period_bounds(period: str) -> tuple[datetime, datetime]:
    year, month = (int(x) for x in period.split("-"))
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def next_period(period: str) -> str:
    return period_of(period_bounds(period)[1])


def booking_period(business_time: datetime, last_closed: str | None) -> str:
    """The entry's own period, or the first open one after it if that is closed."""
    own = period_of(business_time)
    if last_closed is not None and own <= last_closed:
        return next_period(last_closed)
    return own


# --- the chain ------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainedRecord:
    """What a journal transaction's hash covers."""

    seq: int
    idempotency_key: str
    kind: str
    business_time: datetime
    created_at: datetime
    period: str
    source_ref: str | None
    reverses: int | None
    postings: tuple[tuple[str, str, int], ...] = field(default=())  # (account, asset, amount), booked order


def chain_hash(prev: bytes, r: ChainedRecord) -> bytes:
    canonical = json.dumps(
        [
            r.seq,
            r.idempotency_key,
            r.kind,
            r.business_time.astimezone(UTC).isoformat(),
            r.created_at.astimezone(UTC).isoformat(),
            r.period,
            r.source_ref,
            r.reverses,
            [list(p) for p in r.postings],
        ],
        separators=(",", ":"),
    )
    return hashlib.sha256(prev + canonical.encode()).digest()
