"""Events usage-sync publishes on `usage.reported`."""

from datetime import datetime
from typing import Literal

from .envelope import Event


class UsageReported(Event):
    """One closed window of one meter for one customer, accepted by Stripe."""

    event_type: Literal["UsageReported"] = "UsageReported"
    account_id: str
    meter: str
    stripe_event_name: str
    window_start: datetime
    window_end: datetime
    value: int
    identifier: str
