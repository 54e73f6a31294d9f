"""What every Kafka consumer in a service exports on /metrics, by topic and consumer group.

Kafka's own lag (committed offsets against the log's end) belongs to the broker's
exporter; these say what the service did with what it read. Both consumer kinds count
the same way: the reliable subscriber (bus.py) per event, the transactional consumer
(tx_consumer.py) per batch committed.
"""

from prometheus_client import Counter

LABELS = ["topic", "group"]

CONSUMED = Counter(
    "tollgate_consumed_total",
    "Events whose handling finished: the effect committed, or the handler found it had nothing to do.",
    LABELS,
)
DEAD_LETTERED = Counter(
    "tollgate_dead_lettered_total",
    "Events sent to the topic's DLQ instead of being handled: unparseable, or their handler kept failing.",
    LABELS,
)
RETRIED = Counter(
    "tollgate_consumer_retries_total",
    "Failed attempts that were tried again: an event's handler (bus), or a batch's transaction (tx_consumer).",
    LABELS,
)
