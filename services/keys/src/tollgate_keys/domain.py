"""What a key may do: its limits, read from plan features, and why a request is refused.

The check itself runs in PostgreSQL (the `consume` function, migrations/002), because
deciding and consuming must be one atomic step under the key's row lock to stay exact
with any number of concurrent callers and replicas.
"""

import re
from dataclasses import dataclass
from typing import Literal

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
