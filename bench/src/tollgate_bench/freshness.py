"""`make bench-freshness`: what a customer feels under load, on a stack of all services.

Twenty customers of a large pack share 1,000 consuming validations a second for 60 s,
open loop (see `system.FixedRate`). A Kafka consumer of our own follows `ledger.balances`
from before the load, noting when each credits event arrived and its `usage_total`. A
validation is fresh once an event for its account counts as many units as that account
had answered by the time it was answered; its figure is that event's arrival less the
answer's. Alongside, one purchase a second: from the webhook's 200 (the emulator's call
returning) to the key's email reaching the SMTP capture.

  freshness.balance_p50_ms / _p99_ms     validate answered -> ledger.balances carries it
  freshness.key_email_p50_ms / _p99_ms   webhook 200 -> key email received
  freshness.validations_per_s            the rate actually answered (the target is 1,000)
"""

import asyncio
import bisect
import json
import time
from collections import defaultdict

from aiokafka import AIOKafkaConsumer

from tollgate_devstack.demo import Demo
from tollgate_devstack.stack import Stack

from .common import figure, latency_ms, machine
from .system import Customer, FixedRate, Usage, a_purchase_a_second, customers, email_arrival, http, system_stack

RATE = 1000
SECONDS = 60
CUSTOMERS = 20
WARM_UP_SECONDS = 5


class BalanceLog:
    """When each credits account's `usage_total` reached what, as a consumer saw it."""

    def __init__(self, accounts: set[str]) -> None:
        self.accounts = accounts
        self.seen: dict[str, list[tuple[int, float]]] = defaultdict(list)  # (usage_total, arrival), rising

    async def follow(self, bootstrap: str, ready: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer("ledger.balances", bootstrap_servers=bootstrap, auto_offset_reset="latest")
        await consumer.start()
        try:
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=100)
            await consumer.seek_to_end()
            ready.set()
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                now = time.time()
                for messages in batch.values():
                    for m in messages:
                        self.note(json.loads(m.value), now)
        finally:
            await consumer.stop()

    def note(self, event: dict[str, object], now: float) -> None:
        account, total = str(event["account_id"]), event.get("usage_total")
        if account not in self.accounts or event["ledger_account"] != f"customer:{account}:credits":
            return
        if isinstance(total, int) and (not self.seen[account] or total > self.seen[account][-1][0]):
            self.seen[account].append((total, now))

    def reached(self, account: str, units: int) -> float | None:
        """When this account's usage_total first reached `units`."""
        history = self.seen[account]
        i = bisect.bisect_left([t for t, _ in history], units)
        return history[i][1] if i < len(history) else None


async def purchases(demo: Demo, until: float) -> list[float]:
    """One professional pack a second until `until`; each one's webhook-200-to-email delay
    (the capture notes when each email arrived, so reading it later changes nothing)."""
    bought = await a_purchase_a_second(demo, "fresh", lambda: time.time() >= until)
    arrivals = await asyncio.gather(*(email_arrival(demo, email) for _, email, _ in bought))
    return [arrived - paid for (_, _, paid), arrived in zip(bought, arrivals, strict=True)]


async def measure(stack: Stack) -> None:
    ep = stack.endpoints()
    async with Demo(ep, say=lambda _: None, http=http()) as demo:
        buyers: list[Customer] = await customers(demo, "bench", CUSTOMERS)
        log = BalanceLog({c.account for c in buyers})
        ready = asyncio.Event()
        follower = asyncio.create_task(log.follow(ep["kafka"], ready))
        await asyncio.wait_for(ready.wait(), 30)
        keys_port = int(ep["keys"].rsplit(":", 1)[1])
        await FixedRate(keys_port, buyers, RATE, WARM_UP_SECONDS).run()
        await asyncio.sleep(3)  # the warm-up's burns settle: the load starts from a known usage_total
        baseline = {c.account: (log.seen[c.account][-1][0] if log.seen[c.account] else 0) for c in buyers}

        usage = Usage(stack)
        watching = asyncio.create_task(usage.watch())
        started = time.time()
        load = FixedRate(keys_port, buyers, RATE, SECONDS)
        answered, delays = await asyncio.gather(load.run(), purchases(demo, started + SECONDS))
        elapsed = time.time() - started
        used = usage.report()
        watching.cancel()
        await asyncio.sleep(10)  # the last answers' events arrive
        follower.cancel()

    answered.sort(key=lambda a: a.at)
    counted: dict[str, int] = dict(baseline)
    lags, missing = [], 0
    for a in answered:
        if not a.ok:
            continue
        counted[a.account] += 1
        if (seen := log.reached(a.account, counted[a.account])) is None:
            missing += 1
        else:
            lags.append(max(0.0, seen - a.at))
    refused = sum(not a.ok for a in answered)
    print(f"# {machine()}, {len(answered)} validations in {elapsed:.1f}s, {refused} refused, {len(delays)} purchases")
    if missing or refused:
        raise SystemExit(f"{missing} answered validations never showed in ledger.balances; {refused} were refused")
    figure("freshness.validations_per_s", len(answered) / elapsed, "validations/s")
    balance, key_email = latency_ms(lags), latency_ms(delays)
    figure("freshness.balance_p50_ms", balance["p50_ms"], "ms")
    figure("freshness.balance_p99_ms", balance["p99_ms"], "ms")
    figure("freshness.key_email_p50_ms", key_email["p50_ms"], "ms")
    figure("freshness.key_email_p99_ms", key_email["p99_ms"], "ms")
    for name, use in used.items():
        print(f"# {name}: {use['cpu_cores']} cores, peak {use['mem_mib']} MiB")


def main() -> None:
    with system_stack() as stack:
        asyncio.run(measure(stack))


if __name__ == "__main__":
    main()
