"""What checkout exports on /metrics about Stripe's webhooks.

Finance's questions start here: did Stripe's events arrive, and did any fail to become
a payment fact? `unprocessable` means an event was stored but not understood (an
unknown price, say): money Stripe took that no ledger entry shows yet, so alert on it;
`python -m tollgate_checkout.cli replay` applies it again once the cause is fixed.
`parked` facts wait for the fact they depend on (a refund for its payment). Refused
deliveries count by their error code; they carry no trusted event type.
"""

from prometheus_client import Counter, Gauge

from .machines import HANDLED

WEBHOOKS = Counter(
    "tollgate_checkout_webhooks_total",
    "Stripe webhook deliveries: by event type and outcome (published, parked, recorded, stale, ignored, "
    "duplicate, unprocessable, malformed), or type 'unverified' and the refusal's error code.",
    ["type", "outcome"],
)
PARKED = Gauge("tollgate_checkout_parked_facts", "Payment facts waiting for the fact they depend on.")
OLDEST_PARKED = Gauge(
    "tollgate_checkout_parked_oldest_seconds",
    "How long the oldest parked fact has waited. Rising for a day: its dependency (a payment, a subscription) "
    "never arrived, or could not be processed.",
)

# Every series an alert reads exists at 0 from the first scrape, so the first event
# moves it and increase() sees the move.
for _type in HANDLED:
    for _outcome in ("unprocessable", "malformed"):
        WEBHOOKS.labels(_type, _outcome)
for _refusal in ("invalid_signature", "missing_signature", "timestamp_outside_tolerance", "payload_too_large"):
    WEBHOOKS.labels("unverified", _refusal)
