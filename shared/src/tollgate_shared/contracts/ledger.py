"""Events the ledger publishes: balances (compacted, keyed by ledger account) and alerts.

Ledger account ids name their owner and purpose: `customer:<account id>:credits` is the
customer's spendable credits. Other services find an account by these functions, never
by taking an id apart.
"""

from typing import Literal

from pydantic import Field

from .envelope import Event


def credits_account(account_id: str) -> str:
    """The ledger account holding a customer's spendable call credits."""
    return f"customer:{account_id}:credits"


def overdrawn_account(account_id: str) -> str:
    """Calls a customer used beyond their credits: owed to the seller."""
    return f"customer:{account_id}:overdrawn"


def prepaid_account(account_id: str, asset: str) -> str:
    """The money a customer prepaid for credits not yet used, in `asset` (e.g. USD/2)."""
    return f"customer:{account_id}:prepaid:{asset}"


class BalanceUpdated(Event):
    """The full balance of one ledger account, keyed by `ledger_account` on a compacted
    topic: the latest message per key is the account's balance.

    `version` only ever increases per account; a consumer keeps the highest it has
    seen and ignores older ones. Amounts are integers in the asset's smallest unit, in
    the account's normal direction (a customer's credits are positive).
    """

    event_type: Literal["BalanceUpdated"] = "BalanceUpdated"
    ledger_account: str = Field(description="Ledger account id, e.g. customer:cus_123:credits")
    account_id: str = Field(description="The owner: a Tollgate account (Stripe customer) id, or 'system'")
    asset: str = Field(description="CALLS, a custom credit unit, or money as CURRENCY/2")
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int
    current: int = Field(description="Posted balance")
    pending: int = Field(description="Net pending activity (holds)")
    available: int = Field(description="What can be spent, by `spend_rule`")
    available_conservative: int = Field(description="Posted less pending outflows")
    available_optimistic: int = Field(description="Posted plus all pending activity")
    spend_rule: Literal["conservative", "optimistic"]
    usage_total: int | None = Field(
        default=None,
        description="For a customer's credits account: cumulative usage units the ledger has booked against it. "
        "A service that consumes credits itself subtracts what it consumed beyond this from `available`.",
    )
    version: int

    @property
    def is_credits(self) -> bool:
        """Whether this is the owner's spendable credits (see `credits_account`)."""
        return self.ledger_account == credits_account(self.account_id)


def newest_credits(balances: list[BalanceUpdated]) -> list[BalanceUpdated]:
    """Of a batch of balances, each customer's newest credits balance, in account order:
    a consumer that acts on the balance as it is now need not act on every step to it,
    and one that locks a row per account must lock in one order, as everyone else does."""
    newest: dict[str, BalanceUpdated] = {}
    for balance in balances:
        if balance.is_credits and ((seen := newest.get(balance.account_id)) is None or seen.version < balance.version):
            newest[balance.account_id] = balance
    return [newest[account] for account in sorted(newest)]


class BalanceAlert(Event):
    """A spendable balance crossed its low-balance threshold, ran out, or recovered."""

    event_type: Literal["BalanceAlert"] = "BalanceAlert"
    ledger_account: str
    account_id: str
    asset: str
    alert: Literal["low_balance", "exhausted", "replenished"]
    available: int
    threshold: int
    version: int = Field(description="The balance version that raised the alert")
