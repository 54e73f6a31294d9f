"""The topic catalog: every Kafka topic, what its messages are, and how it is created.

Message keys are Tollgate account ids (a customer's Stripe id), so one account's events
stay in order on one partition. Each topic has a dead-letter topic, `<name>.dlq`, for
what its consumers could not apply. Replication defaults to what a production cluster
needs to survive a broker loss (3 replicas, 2 in sync before a write counts); a one-node
dev broker overrides both with 1.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

from .checkout import PAYMENTS_MESSAGES
from .envelope import Event
from .keys import KEYS_MESSAGES, UsageRecorded
from .ledger import BalanceAlert, BalanceUpdated
from .portal import PORTAL_MESSAGES
from .usage_sync import UsageReported

DLQ_RETENTION_MS = str(30 * 24 * 3600 * 1000)  # a month to notice, fix and replay


@dataclass(frozen=True)
class Topic:
    name: str
    messages: tuple[type[Event], ...]
    summary: str
    key: str = "Tollgate account id (the customer's Stripe id)"
    partitions: int = 3
    replication_factor: int = 3
    min_insync_replicas: int = 2
    config: Mapping[str, str] = field(default_factory=dict, hash=False)
    # Whether a publisher's outbox keeps a published event for its retention, so that
    # adding the same event id again is a no-op. Not where every event's id is new (one
    # per API call): nothing can add it twice, and a row per call kept for days only
    # grows the table every call writes to.
    keep_published: bool = True

    @property
    def dlq(self) -> str:
        return f"{self.name}.dlq"

    def carries(self, event: Event) -> bool:
        return isinstance(event, self.messages)


PAYMENTS_EVENTS = Topic(
    "payments.events",
    PAYMENTS_MESSAGES,
    "Payment facts from Stripe, one message per business fact (a paid session, an invoice, a refund, a dispute).",
)
KEYS_EVENTS = Topic("keys.events", KEYS_MESSAGES, "API key lifecycle: issued, topped up, revoked.")
USAGE_RECORDED = Topic(
    "usage.recorded",
    (UsageRecorded,),
    "Every accepted, consuming validation: the units a key used and on what.",
    partitions=6,
    keep_published=False,
)
USAGE_REPORTED = Topic("usage.reported", (UsageReported,), "Usage windows Stripe accepted as Billing Meter events.")
LEDGER_BALANCES = Topic(
    "ledger.balances",
    (BalanceUpdated,),
    "The full balance of a ledger account after each change; the latest message per key is the balance.",
    key="ledger account id (e.g. customer:cus_123:credits)",
    # The latest balance per account is all a consumer needs: compact the rest away.
    config={"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"},
    # Written only by the transaction that makes the account's version, with the version
    # in its id: nothing can add one twice, and a row kept per balance change only grows
    # the table every burn writes to.
    keep_published=False,
)
LEDGER_ALERTS = Topic(
    "ledger.alerts", (BalanceAlert,), "A customer's spendable credits crossed their low-balance threshold."
)

PORTAL_EVENTS = Topic(
    "portal.events",
    PORTAL_MESSAGES,
    "What the customer portal asks of other services: sign-in links for the notifier to email.",
    # A sign-in link is worth nothing after 15 minutes: keep a day, for replays and audits.
    config={"retention.ms": str(24 * 3600 * 1000)},
)

ALL_TOPICS = (
    PAYMENTS_EVENTS,
    KEYS_EVENTS,
    USAGE_RECORDED,
    USAGE_REPORTED,
    LEDGER_BALANCES,
    LEDGER_ALERTS,
    PORTAL_EVENTS,
)
