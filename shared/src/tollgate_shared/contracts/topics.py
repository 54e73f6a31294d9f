"""Kafka topics: names, partitions and configs. Message keys are account ids."""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int = 3
    config: dict[str, str] = field(default_factory=dict)

    @property
    def dlq(self) -> str:
        return f"{self.name}.dlq"


PAYMENTS_EVENTS = Topic("payments.events")
KEYS_EVENTS = Topic("keys.events")
USAGE_RECORDED = Topic("usage.recorded", partitions=6)
USAGE_REPORTED = Topic("usage.reported")
LEDGER_BALANCES = Topic(
    "ledger.balances",
    # The latest balance per account is all a consumer needs: compact the rest away.
    config={"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"},
)
LEDGER_ALERTS = Topic("ledger.alerts")

ALL_TOPICS = (PAYMENTS_EVENTS, KEYS_EVENTS, USAGE_RECORDED, USAGE_REPORTED, LEDGER_BALANCES, LEDGER_ALERTS)
