"""Why a key may or may not be used now. Pure: no I/O."""

from datetime import datetime
from typing import Literal

from .repo import KeyRow

Reason = Literal["not_found", "malformed", "revoked", "suspended", "expired", "quota_exceeded"]


def refusal(key: KeyRow | None, units: int, now: datetime) -> Reason | None:
    """The reason `units` cannot be consumed from `key`, or None if they can."""
    if key is None:
        return "not_found"
    if key.status == "revoked":
        return "revoked"
    if key.status == "suspended":
        return "suspended"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    if key.quota_limit is not None and key.quota_used + units > key.quota_limit:
        return "quota_exceeded"
    return None
