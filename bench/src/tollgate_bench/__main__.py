"""`python -m tollgate_bench stop`: stop the benchmarks' PostgreSQL and Kafka."""

import sys

from tollgate_devstack.stack import Stack

from .common import bench_config


def main() -> int:
    if sys.argv[1:] != ["stop"]:
        print("usage: python -m tollgate_bench stop", file=sys.stderr)
        return 2
    Stack(bench_config()).down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
