"""What checkout exports on /metrics about Stripe's webhooks.

Finance's questions start here: did Stripe's events arrive, and did any fail to become
a payment fact? `unprocessable` means an event was stored but not understood (an
unknown price, say): money Stripe took that no ledger entry shows yet, so alert on it.
Refused deliveries count by their error code; they carry no trusted event type.
"""

from prometheus_client import Counter

WEBHOOKS = Counter(
    "tollgate_checkout_webhooks_total",
    "Stripe webhook deliveries: by event type and outcome (published, ignored, duplicate, unprocessable), "
    "or type 'unverified' and the refusal's error code.",
    ["type", "outcome"],
)
