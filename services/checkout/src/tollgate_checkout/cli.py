"""`python -m tollgate_checkout.cli replay (--event evt_… | --since ISO)`: apply again the
Stripe events stored as unprocessable, once their cause is fixed (a plan added to the
catalog, say). Each is applied exactly as a new delivery would be, in the order received;
what it publishes is published once. Prints each event's new outcome.

Reads CHECKOUT_DATABASE_URL, CHECKOUT_STRIPE_API_KEY (objects whose events cannot decide
their state are fetched) and CHECKOUT_PLANS_FILE.
"""

import argparse
import asyncio
import sys
from datetime import datetime

from tollgate_shared import db

from .config import Settings
from .domain import Catalog
from .handlers import StripeSide, replay_unprocessable
from .stripe_gateway import StripeCheckout, make_client


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tollgate_checkout.cli", description=__doc__)
    parser.add_argument("command", choices=["replay"])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--event", help="one stored event, by its Stripe id")
    which.add_argument("--since", type=datetime.fromisoformat, help="every one received since then")
    args = parser.parse_args(argv)
    return asyncio.run(replay(args, Settings()))  # type: ignore[call-arg]


async def replay(args: argparse.Namespace, settings: Settings) -> int:
    client = make_client(settings.stripe_api_key.get_secret_value(), settings.stripe_api_base)
    stripe_side = StripeSide(
        Catalog.load(settings.plans_file), StripeCheckout(client, settings.success_url, settings.cancel_url)
    )
    pool = await db.connect(settings)
    try:
        done = await replay_unprocessable(pool, stripe_side, args.event, args.since)
    finally:
        await pool.close()
    for event_id, outcome in done:
        print(f"replayed\t{event_id}\t{outcome}")
    print(f"replay: {len(done)} event(s)")
    return 1 if any(outcome == "unprocessable" for _, outcome in done) else 0


if __name__ == "__main__":
    sys.exit(main())
