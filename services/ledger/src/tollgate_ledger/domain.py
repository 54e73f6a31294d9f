"""The ledger's rules: accounts, balanced entries, balances. Pure: no I/O.

A prepaid pack: the customer pays USD into Stripe (our asset) and holds call credits
that are our liability until used. Using a call moves one credit to revenue.
"""

from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

AccountType = Literal["asset", "liability", "revenue", "expense", "equity"]
CREDIT_NORMAL: frozenset[str] = frozenset({"liability", "revenue", "equity"})
CALLS = "CALLS"


@dataclass(frozen=True)
class Account:
    id: str
    owner: str
    type: AccountType
    asset: str
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Posting:
    account: Account
    amount: int  # positive: debit; negative: credit

    def __post_init__(self) -> None:
        if self.amount == 0:
            raise ValueError("a posting moves a non-zero amount")


class Unbalanced(ValueError):
    pass


def assert_balanced(postings: list[Posting]) -> None:
    totals: dict[str, int] = defaultdict(int)
    for p in postings:
        totals[p.account.asset] += p.amount
    off = {asset: total for asset, total in totals.items() if total != 0}
    if off or not postings:
        raise Unbalanced(f"postings do not sum to zero per asset: {off or 'no postings'}")


def money_asset(currency: str) -> str:
    return f"{currency.upper()}/2"


def customer_credits(account_id: str) -> Account:
    return Account(f"customer:{account_id}:credits", account_id, "liability", CALLS, ("no_overdraft",))


def customer_prepaid(account_id: str, currency: str) -> Account:
    asset = money_asset(currency)
    return Account(f"customer:{account_id}:prepaid:{asset}", account_id, "liability", asset)


def stripe_clearing(currency: str) -> Account:
    asset = money_asset(currency)
    return Account(f"system:stripe_clearing:{asset}", "system", "asset", asset)


CREDITS_ISSUED = Account("system:credits_issued", "system", "equity", CALLS)
CREDITS_CONSUMED = Account("system:credits_consumed", "system", "revenue", CALLS)


def purchase_postings(account_id: str, credits: int, amount_minor: int, currency: str) -> list[Posting]:
    """Money in at Stripe owed back as service; credits granted to the customer."""
    postings = [
        Posting(CREDITS_ISSUED, credits),
        Posting(customer_credits(account_id), -credits),
    ]
    if amount_minor:
        postings += [
            Posting(stripe_clearing(currency), amount_minor),
            Posting(customer_prepaid(account_id, currency), -amount_minor),
        ]
    assert_balanced(postings)
    return postings


def burn_postings(account_id: str, units: int) -> list[Posting]:
    """Used calls leave the customer's credits and become revenue."""
    postings = [Posting(customer_credits(account_id), units), Posting(CREDITS_CONSUMED, -units)]
    assert_balanced(postings)
    return postings


@dataclass(frozen=True)
class Balance:
    account_id: str
    type: str
    asset: str
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int
    version: int

    @property
    def _sign(self) -> int:
        return 1 if self.type in CREDIT_NORMAL else -1

    @property
    def current(self) -> int:
        """Posted balance, in the account's normal direction."""
        return self._sign * (self.credits_posted - self.debits_posted)

    @property
    def pending(self) -> int:
        """Net pending activity (holds not yet posted or voided)."""
        return self._sign * (self.credits_pending - self.debits_pending)

    @property
    def available(self) -> int:
        """What can be spent: current less pending outflows. Pending inflows do not count
        until posted (the conservative rule; a hold that may be voided is not money)."""
        outflow = self.debits_pending if self._sign == 1 else self.credits_pending
        return self.current - outflow
