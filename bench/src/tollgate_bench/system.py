"""What the whole-system benchmarks share: a stack of all services of their own, customers
bought through it, a fixed-rate validation driver, and the processes' resource use.

The stack lives in `.stack-bench-system/` (ports offset by 250), fresh for each run and
stopped after it: the other benchmarks leave their own topics full of usage events,
which these services would otherwise start by consuming.
"""

import asyncio
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tollgate_devstack.config import REPO_ROOT, SERVICES, StackConfig
from tollgate_devstack.demo import KEY_IN_EMAIL, Demo, eventually
from tollgate_devstack.stack import Stack

DEFAULT_PLANS = REPO_ROOT / "services" / "checkout" / "src" / "tollgate_checkout" / "plans.json"
# A pack big enough for minutes of load on one key, with the rate limits checked as for any
# plan but set where a benchmark's key does not reach them.
BENCH_PLAN = {
    "product_name": "Tollgate API Benchmark",
    "mode": "payment",
    "credits": 100_000_000,
    "price": {"amount_minor": 100_000, "currency": "usd"},
    "features": ["api:rate:minute:10000000", "api:rate:hour:100000000", "api:units:minute:100000000"],
}
BENCH_METERED_PLAN = {
    "product_name": "Tollgate API Benchmark Pay-as-you-go",
    "mode": "subscription",
    "price": {"amount_minor": 1, "currency": "usd"},
    "meter": "api_calls",
    "features": ["api:rate:minute:10000000", "api:rate:hour:100000000"],
}


def start_system_stack() -> Stack:
    env = {**os.environ, "TOLLGATE_PORT_OFFSET": "250", "TOLLGATE_STACK_DIR": str(REPO_ROOT / ".stack-bench-system")}
    cfg = StackConfig.from_env(env)
    Stack(cfg).down()
    shutil.rmtree(cfg.state_dir, ignore_errors=True)
    cfg.state_dir.mkdir(parents=True)
    plans = cfg.state_dir / "plans.json"
    catalog = json.loads(DEFAULT_PLANS.read_text())
    catalog["plans"] |= {"bench": BENCH_PLAN, "bench-metered": BENCH_METERED_PLAN}
    plans.write_text(json.dumps(catalog))
    os.environ["CHECKOUT_PLANS_FILE"] = str(plans)  # stripe_sync, run by the stack, reads it too
    stack = Stack(cfg, service_env={"CHECKOUT_PLANS_FILE": str(plans)})
    stack.up_infra()
    stack.up_services()
    return stack


@contextmanager
def system_stack() -> Iterator[Stack]:
    stack = start_system_stack()
    try:
        yield stack
    finally:
        stack.down()


@dataclass(frozen=True)
class Customer:
    account: str
    email: str
    key: str


async def buy(demo: Demo, plan: str, tag: str) -> tuple[str, str, float]:
    """One purchase through checkout and the Stripe emulator; (account, email, when the
    emulator had the webhook's 200)."""
    email = f"{tag}@example.com"
    try:
        session = await demo.buy(plan, email)
    except httpx.TransportError:  # a kept-alive connection the server closed as we sent
        session = await demo.buy(plan, email)
    await demo.pay(session["id"])  # returns once the webhook answered 200
    return session["customer"], email, time.time()


async def a_purchase_a_second(demo: Demo, tag: str, done: Callable[[], bool]) -> list[tuple[str, str, float]]:
    """One professional pack bought each second until `done()`: what a running shop sees
    alongside the calls. Each purchase's (account, email, when the webhook had its 200)."""
    tasks, n = [], 0
    while not done():
        tasks.append(asyncio.create_task(buy(demo, "professional", f"{tag}{n}-{int(time.time())}")))
        n += 1
        await asyncio.sleep(1)
    return list(await asyncio.gather(*tasks))


async def customers(demo: Demo, plan: str, count: int, concurrency: int = 8) -> list[Customer]:
    """`count` customers of `plan`, each with the key their email brought."""
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> Customer:
        async with gate:
            account, email, _ = await buy(demo, plan, f"bench{i}-{os.getpid()}")
            key, _ = await demo.key_from_email(email)
            return Customer(account, email, key)

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def email_arrival(demo: Demo, email: str, timeout: float = 60) -> float:
    """When the first email with an API key reached `email` (the capture's clock)."""

    async def probe() -> float | None:
        r = await demo.http.get(f"{demo.ep['smtp_http']}/api/messages", params={"to": email})
        found = [m["received_at"] for m in r.json()["messages"] if KEY_IN_EMAIL.search(m["body"])]
        return min(found) if found else None

    return await eventually(f"the key email to {email}", probe, timeout=timeout, every=0.02)


# --- validations at a fixed rate -----------------------------------------------------


@dataclass
class Answered:
    account: str
    due: float  # when it was scheduled (time.time())
    at: float  # when its answer arrived
    ok: bool


@dataclass
class FixedRate:
    """Validations at `rate` a second for `seconds`, open loop: each is due at its time
    whatever the answers do, and waits for a free connection if none is; raw HTTP/1.1 over
    keep-alive connections, so the driver costs little of the two cores."""

    port: int
    keys: list[Customer]
    rate: float
    seconds: float
    connections: int = 32
    answered: list[Answered] = field(default_factory=list)

    async def run(self) -> list[Answered]:
        idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
        for _ in range(self.connections):
            idle.put_nowait(await asyncio.open_connection("127.0.0.1", self.port))
        total, start, tasks = int(self.rate * self.seconds), time.time() + 0.1, []
        for i in range(total):
            due = start + i / self.rate
            if (wait := due - time.time()) > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(self._one(idle, self.keys[i % len(self.keys)], due)))
        await asyncio.gather(*tasks)
        while not idle.empty():
            idle.get_nowait()[1].close()
        return self.answered

    async def _one(self, idle: asyncio.Queue[Any], customer: Customer, due: float) -> None:
        reader, writer = await idle.get()
        ok = await validate_once(reader, writer, customer.key)
        at = time.time()
        idle.put_nowait((reader, writer))
        self.answered.append(Answered(customer.account, due, at, ok))


async def validate_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> bool:
    """One consuming validation of one unit on a kept-alive connection; whether it was valid."""
    body = json.dumps({"apiKey": key, "units": 1, "consume": True}).encode()
    writer.write(
        b"POST /v1/keys/validate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    answer = await reader.readexactly(length)
    return head.startswith(b"HTTP/1.1 200") and b'"isValid":true' in answer


# --- what the processes used ---------------------------------------------------------


def _cpu_and_memory(pid: int) -> tuple[float, int]:
    """CPU seconds and proportional memory (PSS, KiB) of `pid` and all its descendants
    (PostgreSQL's backends): PSS shares shared_buffers among the backends mapping it,
    where their RSS would count it once for each."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat[stat.rindex(")") + 2 :].split()[1])
            children.setdefault(parent, []).append(int(entry))
    cpu, pss, todo = 0.0, 0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text()
            rest = fields[fields.rindex(")") + 2 :].split()
            cpu += (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")
            rollup = Path(f"/proc/{p}/smaps_rollup").read_text()
            pss += next(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:"))
        except (OSError, IndexError, StopIteration):
            continue
        todo += children.get(p, [])
    return cpu, pss


class Usage:
    """CPU (share of one core) and peak memory (PSS) of each of the stack's processes over a window."""

    NAMES = ("postgres", "kafka", *SERVICES, "stripe-emulator", "smtp-capture")

    def __init__(self, stack: Stack) -> None:
        self.pids = {n: pid for n in self.NAMES if (pid := stack.procs.pid(n)) is not None}
        self.started = time.monotonic()
        self.cpu0 = {n: _cpu_and_memory(pid)[0] for n, pid in self.pids.items()}
        self.peak = dict.fromkeys(self.pids, 0)

    def sample(self) -> None:
        for n, pid in self.pids.items():
            self.peak[n] = max(self.peak[n], _cpu_and_memory(pid)[1])

    async def watch(self, every: float = 2.0) -> None:
        """Sample peak memory until cancelled."""
        while True:
            self.sample()
            await asyncio.sleep(every)

    def report(self) -> dict[str, dict[str, float]]:
        elapsed = time.monotonic() - self.started
        return {
            n: {
                "cpu_cores": round((_cpu_and_memory(pid)[0] - self.cpu0[n]) / elapsed, 2),
                "mem_mib": self.peak[n] // 1024,
            }
            for n, pid in self.pids.items()
        }


def http(timeout: float = 15) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=timeout)
