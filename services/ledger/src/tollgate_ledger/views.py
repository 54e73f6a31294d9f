"""What the ledger's routes answer, as typed models: the OpenAPI documents say exactly
what each success body holds."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from . import finance, repo
from .domain import Balance


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
    type: str
    asset: str
    debits: int
    credits: int


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
            TrialBalanceLine(account=x.account_id, type=x.type, asset=x.asset, debits=x.debits, credits=x.credits)
            for x in tb.rows
        ],
        totals={asset: Totals(debits=d, credits=c) for asset, (d, c) in tb.totals().items()},
        balanced=not tb.off_balance(),
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
