"""`python -m tollgate_usage_sync.cli reconcile|backfill --from ISO --to ISO`.

reconcile: prints every difference between keys, the ledger, usage-sync and Stripe for
the period; exits 1 if there is any. backfill: re-reports the period's windows Stripe
refused, under their own identifiers; confirmed windows are never sent again (Stripe
keeps identifiers for at least a day, not forever).
"""

import argparse
import asyncio
import sys
from datetime import datetime

import httpx

from tollgate_shared import db
from tollgate_shared.contracts import usage_from
from tollgate_shared.contracts.topics import USAGE_RECORDED
from tollgate_shared.kafka_reader import read_topic

from . import repo
from .app import stripe_client
from .config import StripeSettings, WindowSettings
from .domain import load_meters
from .reconcile import reconcile


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tollgate-usage-sync")
    parser.add_argument("command", choices=["reconcile", "backfill"])
    parser.add_argument("--from", dest="start", type=datetime.fromisoformat, required=True)
    parser.add_argument("--to", dest="end", type=datetime.fromisoformat, required=True)
    parser.add_argument(
        "--ledger-url", default=None, help="the ledger's admin listener (default: USAGE_SYNC_LEDGER_URL)"
    )
    parser.add_argument("--customer", help="only this customer (a Stripe customer id)")
    args = parser.parse_args(argv)
    settings = StripeSettings() if args.command == "reconcile" else WindowSettings()  # type: ignore[call-arg]
    return asyncio.run(run(args, settings))


async def run(args: argparse.Namespace, settings: WindowSettings) -> int:
    pool = await db.connect(settings)
    try:
        if args.command == "backfill":
            async with pool.acquire() as conn:
                n = await repo.reopen_for_backfill(conn, args.start, args.end, args.customer)
            print(f"backfill: {n} windows queued to be re-reported with their original identifiers (refused ones)")
            return 0
        assert isinstance(settings, StripeSettings)
        records = await read_topic(settings.kafka_bootstrap_servers, USAGE_RECORDED.name, **settings.kafka_options())
        diffs = await reconcile(
            usages=[usage_from(r) for r in records],
            pool=pool,
            client=stripe_client(settings),
            ledger=httpx.AsyncClient(
                base_url=args.ledger_url or settings.ledger_url,
                headers={"Authorization": f"Bearer {settings.ledger_token.get_secret_value()}"},
                timeout=10,
            ),
            meters=load_meters(settings.meters_file),
            start=args.start,
            customer=args.customer,
            end=args.end,
        )
    finally:
        await pool.close()
    for d in diffs:
        print(f"difference\t{d}")
    print(f"reconcile: {len(diffs)} difference(s) for {args.start.isoformat()} .. {args.end.isoformat()}")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
