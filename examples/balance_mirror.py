"""A local copy of every Tollgate balance, kept from `ledger.balances`: what a service of
yours would run to gate spending, show balances or alert, without calling the ledger.

    python examples/balance_mirror.py --bootstrap 127.0.0.1:19092
    KAFKA_PASSWORD=… python examples/balance_mirror.py --bootstrap broker:9093 \
        --user billing --cafile ca.crt --group billing.mirror

With `--user`, it logs in over SASL_SSL (SCRAM-SHA-512), the password read from
KAFKA_PASSWORD so that it never shows in a process list; the user needs Read on
`ledger.balances` and, with `--group`, on the group (docs/consuming-events.md).

It needs only aiokafka (no Tollgate code): it reads the compacted topic from the
beginning (which leaves the latest balance of every account, and maybe some older
ones), keeps per ledger account the message with the highest `version`, and goes on
reading new ones. Run it with a consumer group to resume where it stopped; a copy
rebuilt from the start comes to the same state. docs/consuming-events.md explains why.
"""

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context

TOPIC = "ledger.balances"


class BalanceMirror:
    """The newest balance per ledger account. Applying a message twice, or an older one
    late, changes nothing: `version` only ever rises per account."""

    def __init__(self) -> None:
        self.balances: dict[str, dict[str, Any]] = {}

    def apply(self, balance: dict[str, Any]) -> bool:
        """True if this message is news."""
        have = self.balances.get(balance["ledger_account"])
        if have is not None and have["version"] >= balance["version"]:
            return False
        self.balances[balance["ledger_account"]] = balance
        return True

    def credits_of(self, account_id: str) -> dict[str, Any] | None:
        """A customer's call credits (their account id is their Stripe customer id)."""
        return self.balances.get(f"customer:{account_id}:credits")


async def follow(
    mirror: BalanceMirror,
    bootstrap: str,
    *,
    group_id: str | None = None,
    stop: asyncio.Event | None = None,
    on_change: Callable[[dict[str, Any]], None] = lambda _balance: None,
    **kafka: Any,
) -> None:
    """Read `ledger.balances` into `mirror` until `stop` is set."""
    consumer = AIOKafkaConsumer(
        TOPIC, bootstrap_servers=bootstrap, group_id=group_id, auto_offset_reset="earliest", **kafka
    )
    await consumer.start()
    try:
        while stop is None or not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    if record.value is None:
                        continue  # a tombstone: nothing the ledger sends today, but a reader must allow it
                    balance = json.loads(record.value)
                    if balance.get("event_type") == "BalanceUpdated" and mirror.apply(balance):
                        on_change(balance)
    finally:
        await consumer.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--group", default=None, help="a consumer group, to resume where the last run stopped")
    parser.add_argument("--user", default=None, help="log in as this SCRAM-SHA-512 user over SASL_SSL")
    parser.add_argument("--cafile", default=None, help="the CA the brokers' certificates are checked against")
    args = parser.parse_args()

    def show(b: dict[str, Any]) -> None:
        print(
            json.dumps({k: b[k] for k in ("ledger_account", "current", "pending", "available", "version")}), flush=True
        )

    try:
        asyncio.run(follow(BalanceMirror(), args.bootstrap, group_id=args.group, on_change=show, **login(args)))
    except KeyboardInterrupt:
        return 0
    except KafkaError as exc:  # refused, most often: the user lacks an ACL
        print(f"cannot follow {TOPIC}: {exc}", file=sys.stderr)
        return 1
    return 0


def login(args: argparse.Namespace) -> dict[str, Any]:
    if args.user is None:
        return {}
    if not os.environ.get("KAFKA_PASSWORD"):
        sys.exit("--user needs the password in KAFKA_PASSWORD")
    return {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": args.user,
        "sasl_plain_password": os.environ["KAFKA_PASSWORD"],
        "ssl_context": create_ssl_context(cafile=args.cafile),
    }


if __name__ == "__main__":
    sys.exit(main())
