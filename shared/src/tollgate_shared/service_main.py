"""`python -m tollgate_<service> [serve | migrate | asyncapi | replay-dlq]`: every service's
one entry point.

serve (the default) runs the HTTP app and everything the service does in the background;
migrate brings the service's schema up to date (as the owner, `DATABASE_OWNER_URL`),
grants the service's own role what it needs, and exits; asyncapi prints (or writes,
with --out) the AsyncAPI document of what the service consumes and publishes;
replay-dlq --subscription NAME [--since ISO] applies again, once each, what that
subscription dead-lettered (after the cause is fixed), and exits 1 if one fails again.
"""

import argparse
import asyncio
import sys
from collections.abc import Callable
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from . import asyncapi, db, dlq
from .consumer import Subscription
from .runtime import ServiceSpec, migrate, serve
from .settings import ServiceSettings


def main(
    spec: ServiceSpec,
    settings_type: type[ServiceSettings],
    build_app: Callable[[Any], Any],
    schema_dir: Path,
    consumer_deps: Callable[[Any], Any] = lambda _settings: None,
    argv: list[str] | None = None,
) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m tollgate_{spec.name.replace('-', '_')}", description=__doc__)
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate", "asyncapi", "replay-dlq"])
    parser.add_argument("--out", type=Path, help="asyncapi: write the document here instead of stdout")
    names = [s.name for s in spec.subscriptions]
    parser.add_argument("--subscription", choices=names, help="replay-dlq: whose dead letters")
    parser.add_argument("--since", type=datetime.fromisoformat, help="replay-dlq: only those set aside since")
    args = parser.parse_args(argv)
    if args.command == "asyncapi":
        text = asyncapi.to_yaml(asyncapi.document(spec, version(f"tollgate-{spec.name}")))
        if args.out:
            args.out.write_text(text)
        else:
            sys.stdout.write(text)
        return 0
    settings = settings_type()  # type: ignore[call-arg]
    if args.command == "migrate":
        applied = asyncio.run(migrate(settings, schema_dir))
        print(f"migrate: {settings.schema_name}: {', '.join(applied) or 'up to date'}")
        return 0
    if args.command == "replay-dlq":
        if args.subscription is None:
            parser.error("replay-dlq needs --subscription")
        subscription = next(s for s in spec.subscriptions if s.name == args.subscription)
        return asyncio.run(_replay(spec, settings, subscription, consumer_deps(settings), args.since))
    serve(build_app(settings), settings)
    return 0


async def _replay(
    spec: ServiceSpec, settings: ServiceSettings, subscription: Subscription[Any, Any], deps: Any, since: Any
) -> int:
    group = f"{settings.group_id or spec.name}.{subscription.name}"
    bootstrap, options = settings.kafka_bootstrap_servers, settings.kafka_options()
    records = await dlq.dead_letters(bootstrap, subscription.topic.dlq, group, since, **options)
    pool = await db.connect(settings)
    try:
        done = await dlq.replay(subscription, deps, records, pool, group)
    finally:
        await pool.close()
    for item in done:
        print(f"{subscription.topic.dlq}\t{item.offset}\t{item.outcome}")
    print(f"replay-dlq: {sum(d.outcome == 'replayed' for d in done)} replayed, {len(records)} set aside by {group}")
    return 1 if any(d.outcome.startswith("failed") for d in done) else 0
