"""What the notifier exports on /metrics: emails by template and what became of them.

`already_sent` is a redelivered event finding its email sent: the dedup working, not a
fault. SMTP failures are retried by the subscriber and show in
`tollgate_consumer_retries_total` and `tollgate_dead_lettered_total`.
"""

from prometheus_client import Counter

EMAILS = Counter(
    "tollgate_notifier_emails_total",
    "Emails by template and result: sent, or already_sent (a redelivered event).",
    ["template", "result"],
)
