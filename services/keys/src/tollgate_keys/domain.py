"""What a key may do: its limits, read from plan features, and why a request is refused.

The check itself runs in PostgreSQL (`consume_batch()` in schema/sql/validation.sql), because
deciding and consuming must be one atomic step under the key's row lock to stay exact
with any number of concurrent callers and replicas.
"""

import re
from dataclasses import dataclass
from typing import Literal
from uuid import UUID

Reason = Literal[
    "not_found",
    "malformed",
    "revoked",
    "suspended",
    "expired",
    "quota_exceeded",
    "rate_limited",
    "insufficient_balance",
]
FEATURE = re.compile(r"^api:(rate|units):(minute|hour|day):(\d+)$")


@dataclass(frozen=True)
class Limits:
    requests_per_minute: int | None = None
    requests_per_hour: int | None = None
    requests_per_day: int | None = None
    units_per_minute: int | None = None


def limits_from_features(features: tuple[str, ...] | list[str]) -> Limits:
    """`api:rate:minute:100` etc. Unknown features are ignored (they may be for the product)."""
    found: dict[str, int] = {}
    for feature in features:
        match = FEATURE.match(feature)
        if not match:
            continue
        kind, period, n = match.groups()
        name = f"requests_per_{period}" if kind == "rate" else f"units_per_{period}"
        if name in Limits.__dataclass_fields__ and int(n) > 0:
            found.setdefault(name, int(n))
    return Limits(**found)


class KeyNotFound(LookupError):
    def __init__(self, key_id: UUID | str) -> None:
        super().__init__(f"no key {key_id}")


class KeyRevokedError(Exception):
    """A revoked key stays revoked: it cannot be suspended, resumed or given an expiry."""

    def __init__(self, key_id: UUID) -> None:
        super().__init__(f"key {key_id} is revoked")


class RotationRefused(Exception):
    """Why a key cannot be rotated: `key_not_rotatable` or `no_email_on_file`."""
