"""`python -m tollgate_<service> [serve | migrate | asyncapi]`: every service's one entry point.

serve (the default) runs the HTTP app and everything the service does in the background;
migrate brings the service's schema up to date and exits; asyncapi prints (or writes,
with --out) the AsyncAPI document of what the service consumes and publishes.
"""

import argparse
import asyncio
import sys
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

from . import asyncapi, db
from .runtime import ServiceSpec, serve
from .settings import ServiceSettings


def main(
    spec: ServiceSpec,
    settings_type: type[ServiceSettings],
    build_app: Callable[[Any], Any],
    service_dir: Path,
    argv: list[str] | None = None,
) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m tollgate_{spec.name.replace('-', '_')}", description=__doc__)
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate", "asyncapi"])
    parser.add_argument("--out", type=Path, help="asyncapi: write the document here instead of stdout")
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
        applied = asyncio.run(db.migrate(settings.database_url, settings.schema_name, service_dir))
        print(f"migrate: {settings.schema_name}: {', '.join(applied) or 'up to date'}")
        return 0
    serve(build_app(settings), settings)
    return 0
