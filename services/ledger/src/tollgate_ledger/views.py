"""What the ledger's routes answer, as typed models: the OpenAPI documents say exactly
what each success body holds."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from . import finance, repo
from .domain import Balance, account_name


class BalanceView(BaseModel):
    ledger_account: str
    account_id: str = Field(description="The customer (or subscription, or system) owning the account")
    type: str
    asset: str
    current: int = Field(description="Posted balance, in the account's normal direction")
    pending: int
    available: int = Field(description="What may be spent now, by the account's spend rule")
    available_conservative: int
    available_optimistic: int
    spend_rule: str
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int
    flags: list[str]
    version: int
    low_balance_threshold: int | None = Field(default=None, description="Alerts fire below this; unset: the default")


def balance_view(b: Balance) -> BalanceView:
    return BalanceView(
        ledger_account=b.account_id,
        account_id=b.owner,
        type=b.type,
        asset=b.asset,
        current=b.current,
        pending=b.pending,
        available=b.available,
        available_conservative=b.available_conservative,
        available_optimistic=b.available_optimistic,
        spend_rule=b.spend_rule,
        debits_posted=b.debits_posted,
        credits_posted=b.credits_posted,
        debits_pending=b.debits_pending,
        credits_pending=b.credits_pending,
        flags=list(b.flags),
        version=b.version,
        low_balance_threshold=b.low_balance_threshold,
    )


class Balances(BaseModel):
    account_id: str
    balances: list[BalanceView]


class GrantView(BaseModel):
    id: str
    kind: Literal["paid", "promotional", "adjustment"]
    granted: int
    remaining: int
    expires_at: datetime | None


class Grants(BaseModel):
    account_id: str
    grants: list[GrantView] = Field(description="Burned in this order: promotional before paid, soonest to end first")


class Period(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to")


class Usage(Period):
    account_id: str
    units_burned: int


class Granted(BaseModel):
    grant_id: str
    account_id: str
    units: int


class Reversed(BaseModel):
    reversed: int
    reversal_tx_id: int


class TransferDone(BaseModel):
    id: str
    status: Literal["pending", "posted"]
    outcome: str = Field(description="created, or exists (the same id was sent before)")


class HoldChanged(BaseModel):
    id: str
    status: Literal["posted", "voided"]
    changed: bool


class StatementLine(BaseModel):
    tx_id: int
    seq: int
    business_time: datetime
    kind: str
    amount: int
    balance: int
    source_ref: str | None


class StatementView(BaseModel):
    ledger_account: str
    asset: str
    opening: int
    lines: list[StatementLine]
    closing: int


def statement_view(st: repo.Statement) -> StatementView:
    return StatementView(
        ledger_account=st.account_id,
        asset=st.asset,
        opening=st.opening,
        lines=[
            StatementLine(
                tx_id=x.tx_id,
                seq=x.seq,
                business_time=x.business_time,
                kind=x.kind,
                amount=x.amount,
                balance=x.balance,
                source_ref=x.source_ref,
            )
            for x in st.lines
        ],
        closing=st.closing,
    )


class TrialBalanceLine(BaseModel):
    account: str
    name: str
    type: str
    asset: str
    opening: int = Field(description="Net debit (positive) or credit (negative) before the period")
    debits: int
    credits: int
    closing: int = Field(description="opening + debits - credits")


class Totals(BaseModel):
    debits: int
    credits: int


class TrialBalanceView(BaseModel):
    accounts: list[TrialBalanceLine]
    totals: dict[str, Totals] = Field(description="Per asset")
    balanced: bool


def trial_balance_view(tb: repo.TrialBalance) -> TrialBalanceView:
    return TrialBalanceView(
        accounts=[
            TrialBalanceLine(
                account=x.account_id,
                name=account_name(x.account_id),
                type=x.type,
                asset=x.asset,
                opening=x.opening,
                debits=x.debits,
                credits=x.credits,
                closing=x.closing,
            )
            for x in tb.rows
        ],
        totals={asset: Totals(debits=d, credits=c) for asset, (d, c) in tb.totals().items()},
        balanced=not tb.off_balance(),
    )


class RollForwardLine(BaseModel):
    currency: str
    scale: int = Field(description="Decimal places: amounts are in the currency's minor unit (cents)")
    opening: int = Field(description="Deferred revenue (prepaid money owed as service) at the period's start")
    prepayments: int = Field(description="Paid in for credits: packs and top-ups")
    recognised_usage: int = Field(description="Earned as prepaid credits were used")
    recognised_expiry: int = Field(description="Earned as paid credits expired unused")
    refunds: int = Field(description="Returned to customers out of prepaid money")
    disputes_lost: int = Field(description="Taken back by lost disputes out of prepaid money")
    corrections: int = Field(description="Moved by an operator's transfers and reversals (signed)")
    closing: int = Field(description="opening + prepayments - recognised - refunds - disputes lost + corrections")
    prepaid_accounts_closing: int = Field(description="What the customers' prepaid accounts hold at the period's end")
    revenue_booked: int = Field(description="What the revenue accounts were credited in the period")
    tied: bool
    problems: list[str]


class RevenueView(BaseModel):
    period: str
    currencies: list[RollForwardLine]
    tied: bool = Field(description="Every currency's roll-forward ties; a period closes only then")


def revenue_view(period: str, lines: list[finance.RollForward]) -> RevenueView:
    return RevenueView(
        period=period,
        currencies=[
            RollForwardLine(
                currency=rf.asset.partition("/")[0],
                scale=int(rf.asset.partition("/")[2] or 0),
                opening=rf.opening,
                prepayments=rf.prepayments,
                recognised_usage=rf.recognised_usage,
                recognised_expiry=rf.recognised_expiry,
                refunds=rf.refunds,
                disputes_lost=rf.disputes_lost,
                corrections=rf.corrections,
                closing=rf.closing,
                prepaid_accounts_closing=rf.prepaid_closing,
                revenue_booked=rf.revenue_booked,
                tied=rf.tied,
                problems=rf.problems,
            )
            for rf in lines
        ],
        tied=all(rf.tied for rf in lines),
    )


class PeriodClosed(BaseModel):
    period: str
    accounts: int
    chain_seq: int
    chain_hash: str


def closed_view(c: finance.Closed) -> PeriodClosed:
    return PeriodClosed(period=c.period, accounts=c.accounts, chain_seq=c.chain_seq, chain_hash=c.chain_hash)


class Verified(BaseModel):
    ok: bool
    problems: list[str]
