"""Events the ledger publishes: balances (compacted, keyed by account) and alerts."""

from typing import Literal

from .envelope import Event


class BalanceUpdated(Event):
    """The full balance of one account's asset; `version` only ever increases."""

    event_type: Literal["BalanceUpdated"] = "BalanceUpdated"
    account_id: str
    asset: str
    current: int
    pending: int
    available: int
    version: int
