"""Versioned contracts of every Tollgate topic: one module per producing service."""

from .checkout import (
    DisputeClosed,
    DisputeOpened,
    InvoicePaid,
    InvoicePaymentFailed,
    PaymentRefunded,
    PaymentsEvent,
    PaymentSucceeded,
    SubscriptionEnded,
    SubscriptionStarted,
    TopUpFailed,
    TopUpRequested,
    TopUpSucceeded,
    payments_event,
)
from .envelope import Event, Money, event_id_for
from .keys import (
    KeyIssued,
    KeyRevoked,
    KeysEvent,
    KeyToppedUp,
    UsageIntake,
    UsageRecorded,
    keys_event,
    parse_usage,
    usage_from,
)
from .ledger import (
    BalanceAlert,
    BalanceUpdated,
    credits_account,
    newest_credits,
    overdrawn_account,
    prepaid_account,
)
from .portal import SignInLinkRequested
from .topics import ALL_TOPICS, Topic
from .usage_sync import UsageReported

__all__ = [
    "ALL_TOPICS",
    "BalanceAlert",
    "BalanceUpdated",
    "DisputeClosed",
    "DisputeOpened",
    "Event",
    "InvoicePaid",
    "InvoicePaymentFailed",
    "KeyIssued",
    "KeyRevoked",
    "KeyToppedUp",
    "KeysEvent",
    "Money",
    "PaymentRefunded",
    "PaymentSucceeded",
    "PaymentsEvent",
    "SignInLinkRequested",
    "SubscriptionEnded",
    "SubscriptionStarted",
    "TopUpFailed",
    "TopUpRequested",
    "TopUpSucceeded",
    "Topic",
    "UsageIntake",
    "UsageRecorded",
    "UsageReported",
    "credits_account",
    "event_id_for",
    "keys_event",
    "newest_credits",
    "overdrawn_account",
    "parse_usage",
    "payments_event",
    "prepaid_account",
    "usage_from",
]
