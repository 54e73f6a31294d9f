"""The open-loop load generator `make bench-keys` drives validations with at a fixed rate.

Requests go out at a fixed rate whatever the answers do, and each latency counts from the
request's scheduled time, so a slow server cannot hide its queueing (no coordinated
omission); a kernel timer keeps the schedule. The generator is C (`loadgen.c`, compiled
on first use) because it shares the machine's cores with the service it measures, and
a generator's own CPU and wake-ups sit inside every latency it reports. Flat out, the
benchmark uses wrk, also C.
"""

import hashlib
import json
import subprocess
from pathlib import Path

from tollgate_devstack import infra

SOURCE = Path(__file__).with_name("loadgen.c")


def build(cache_dir: Path) -> Path:
    """The generator compiled from `loadgen.c`, kept in `cache_dir` under the source's
    hash, so an edited source is compiled again and an unchanged one only once."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    binary = cache_dir / "bin" / f"loadgen-{digest}"
    if not binary.exists():
        binary.parent.mkdir(parents=True, exist_ok=True)
        partial = binary.with_suffix(".partial")
        subprocess.run(
            [infra.debian_command("cc", "gcc"), "-O2", "-std=c11", "-Wall", "-Wextra", "-o", str(partial), str(SOURCE)],
            check=True,
        )
        partial.rename(binary)
    return binary


def command(binary: Path, port: int, keys_file: Path, rate: float, seconds: float, connections: int = 64) -> list[str]:
    """`binary` sending `rate` validations a second to 127.0.0.1:`port` for `seconds`, each
    for a random key of `keys_file` (one per line), over `connections` keep-alive connections."""
    return [
        str(binary),
        "--port",
        str(port),
        "--keys-file",
        str(keys_file),
        "--rate",
        str(rate),
        "--seconds",
        str(seconds),
        "--connections",
        str(connections),
    ]


def run(binary: Path, port: int, keys_file: Path, rate: float, seconds: float) -> dict[str, float]:
    """What the generator prints: requests, seconds, rate, errors (answers that were not a
    valid validation), p50_ms, p99_ms, p999_ms, and cpu_s, its own CPU time."""
    out = subprocess.run(command(binary, port, keys_file, rate, seconds), check=True, capture_output=True, text=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]
