"""An open-loop HTTP/1.1 load generator for `POST /v1/keys/validate`, run as its own process.

Requests are scheduled at a fixed rate whatever the answers do, and latency is measured
from each request's scheduled time, so a slow server cannot hide its queueing (no
coordinated omission). A kernel timer keeps the schedule (`ticker.py`), so the
generator's own lateness is as small as the machine allows. Raw asyncio streams on
uvloop with keep-alive and pre-built requests: a Python HTTP client library would
itself be the bottleneck. (Flat out, the benchmark uses wrk instead.) Prints one JSON
line: requests, seconds, rate, p50/p99/p99.9 in ms, errors.
"""

import argparse
import asyncio
import gc
import json
import random
import time

import uvloop

from . import ticker


def request(host: str, port: int, key: str) -> bytes:
    body = json.dumps({"apiKey": key, "units": 1, "consume": True}).encode()
    return (
        f"POST /v1/keys/validate HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def content_length(head: bytes) -> int:
    """The Content-Length of an HTTP/1.1 message head; 0 if it has none."""
    lines = head.split(b"\r\n")[1:]  # after the request or status line
    return next((int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length:")), 0)


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    body = await reader.readexactly(content_length(head))
    return status if b'"isValid":true' in body else -status


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def call(self, payload: bytes) -> int:
        self.writer.write(payload)
        return await read_response(self.reader)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else 0.0


def latency_ms(latencies: list[float]) -> dict[str, float]:
    """p50, p99 and p99.9 of `latencies` (seconds), in milliseconds."""
    return {
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "p999_ms": percentile(latencies, 0.999) * 1000,
    }


async def run(host: str, port: int, keys: list[str], rate: float, seconds: float, connections: int) -> dict[str, float]:
    payloads = [request(host, port, k) for k in keys]
    pool = [Connection(host, port) for _ in range(connections)]
    await asyncio.gather(*(c.open() for c in pool))
    latencies: list[float] = []
    errors = 0
    free: asyncio.Queue[Connection] = asyncio.Queue()
    for c in pool:
        free.put_nowait(c)

    async def one(scheduled: float) -> None:
        nonlocal errors
        conn = await free.get()  # one request at a time per connection
        try:
            if await conn.call(random.choice(payloads)) != 200:
                errors += 1
        except Exception:
            errors += 1
        finally:
            free.put_nowait(conn)
        latencies.append(time.monotonic() - scheduled)

    total, interval_ns = int(rate * seconds), round(1e9 / rate)
    first_ns = time.monotonic_ns() + interval_ns
    tasks: list[asyncio.Task[None]] = []
    all_sent = asyncio.get_running_loop().create_future()

    def send(periods: int) -> None:
        for _ in range(min(periods, total - len(tasks))):
            scheduled = (first_ns + len(tasks) * interval_ns) / 1e9
            tasks.append(asyncio.create_task(one(scheduled)))
        if len(tasks) == total and not all_sent.done():
            all_sent.set_result(None)

    started = time.monotonic()
    with ticker.periodic(first_ns, interval_ns, send):
        await all_sent
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - started
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "rate": len(latencies) / elapsed,
        "errors": errors,
        **latency_ms(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--keys-file", required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests/s")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    with open(args.keys_file) as f:
        keys = f.read().split()
    # The generator's own garbage collections would pause its clock and show up as the
    # service's latency; a 10-second run can keep its few MB of garbage.
    gc.collect()
    gc.freeze()
    gc.disable()
    result = uvloop.run(run("127.0.0.1", args.port, keys, args.rate, args.seconds, args.connections))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
