"""`python -m tollgate_shared.topics [--replicas N]`: create every topic of the catalog, and
its dead-letter topic, that does not exist yet. Run by the deployment (a Job), not by the
services at start. Reads KAFKA_BOOTSTRAP_SERVERS and the KAFKA_* security settings."""

import argparse
import asyncio
import sys

from pydantic_settings import SettingsConfigDict

from .bus import ensure_topics
from .settings import ServiceSettings


class TopicSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="")

    schema_name: str = "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tollgate_shared.topics", description=__doc__)
    parser.add_argument("--replicas", type=int, help="override the catalog's replication (a one-node broker: 1)")
    args = parser.parse_args(argv)
    settings = TopicSettings()
    created = asyncio.run(
        ensure_topics(settings.kafka_bootstrap_servers, replicas=args.replicas, **settings.kafka_options())
    )
    print(f"topics: {', '.join(created) or 'all present'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
