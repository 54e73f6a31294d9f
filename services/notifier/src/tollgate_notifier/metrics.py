"""What the notifier exports on /metrics: emails by template and what became of them.

`already_sent` is a redelivered event finding its email sent: the dedup working, not a
fault. A mail server that is away is retried by the consumer for as long as it takes
(`tollgate_consumer_retries_total`); a message it refuses for good is dead-lettered
(`tollgate_dead_lettered_total`).
"""

from prometheus_client import Counter

EMAILS = Counter(
    "tollgate_notifier_emails_total",
    "Emails by template and result: sent, already_sent (a redelivered event), or key_gone "
    "(a key the keys service no longer holds, emailed before).",
    ["template", "result"],
)
