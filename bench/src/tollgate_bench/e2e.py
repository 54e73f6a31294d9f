"""`make bench-e2e`: the highest validation rate the whole system holds, every service at once.

A stack of all services (see `system`). Eighteen customers of a large pack and two of a
metered subscription share the validations, so usage is burned by the ledger and
aggregated for Stripe by usage-sync; a purchase a second goes through checkout, the
ledger, keys and the notifier alongside.

First the limit in this run: validations flat out for 10 s, wrk with 64 connections
each sending the next as its answer arrives (bench-keys' script); what is answered is
what keys, with everything else running, can do. Then trials
of 30 s at rising rates, open loop: a rate holds when

- every validation is answered valid, at least 97% of the rate, and the p99 answer comes
  within 5 s of when it was due (an open-loop driver sees queueing as lateness: the
  system keeps up with the calls as with the events); that p99 is printed too;
- every consumer group's lag stays under 5 s: from the Kafka offsets the services commit
  for monitoring, a partition's lag is how long ago its end offset passed the group's
  committed offset (end offsets sampled each second);
- no dead-letter topic grows.

The rate doubles while it holds, then is bisected twice between the last that held and
the first that did not; the best is held for 2 minutes, and if it does not, 10% less, up to five times.

  e2e.validate_capacity_per_s         the limit: keys answering as fast as it can, all else running
  e2e.sustained_validations_per_s     held for 2 minutes within the bounds above
  e2e.validate_p99_ms                 at that rate, from when each call was due to its answer
  e2e.<process>_cpu_cores, _mem_mib   each process at that rate (PostgreSQL with its backends; memory as PSS)
"""

import asyncio
import time
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tollgate_devstack.demo import Demo
from tollgate_devstack.stack import Stack

from .common import figure, latency_ms, machine, wrk
from .system import Customer, FixedRate, Usage, a_purchase_a_second, customers, http, system_stack

FIRST_RATE = 500.0
TRIAL_SECONDS = 30
HOLD_SECONDS = 120
LAG_BOUND_S = 5.0
LATE_BOUND_S = 5.0


@dataclass
class Lag:
    """Every consumer group's lag in seconds, from committed and end offsets."""

    bootstrap: str
    ends: dict[TopicPartition, list[tuple[float, int]]] = field(default_factory=dict)
    worst: dict[str, float] = field(default_factory=dict)  # group -> worst lag seen since reset

    async def follow(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        offsets = AIOKafkaConsumer(bootstrap_servers=self.bootstrap)
        await admin.start()
        await offsets.start()
        try:
            while True:
                await self.sample(admin, offsets)
                await asyncio.sleep(1)
        finally:
            await offsets.stop()
            await admin.close()

    async def sample(self, admin: AIOKafkaAdminClient, offsets: AIOKafkaConsumer) -> None:
        groups = [g[0] for g in await admin.list_consumer_groups()]
        committed = {g: await admin.list_consumer_group_offsets(g) for g in groups}
        partitions = {tp for c in committed.values() for tp in c}
        now = time.time()
        for tp, end in (await offsets.end_offsets(list(partitions))).items():
            history = self.ends.setdefault(tp, [])
            if not history or history[-1][1] != end:
                history.append((now, end))
        for group, by_partition in committed.items():
            for tp, meta in by_partition.items():
                self.worst[group] = max(self.worst.get(group, 0.0), self.behind(tp, meta.offset, now))

    def behind(self, tp: TopicPartition, offset: int, now: float) -> float:
        """Seconds since the partition's end first passed `offset`; 0 if caught up."""
        history = self.ends.get(tp, [])
        if not history or offset >= history[-1][1]:
            return 0.0
        passed = next((at for at, end in history if end > offset), history[-1][0])
        return now - passed

    def reset(self) -> None:
        self.worst.clear()


async def dead_letters(bootstrap: str) -> int:
    """Records in every `.dlq` topic."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        topics = [t for t in await consumer.topics() if t.endswith(".dlq")]
        parts = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        return sum((await consumer.end_offsets(parts)).values()) if parts else 0
    finally:
        await consumer.stop()


@dataclass
class Trial:
    rate: float
    answered_per_s: float
    late_p99_s: float
    refused: int
    worst_lag: dict[str, float]
    dead_lettered: int
    usage: dict[str, dict[str, float]] | None = None

    @property
    def held(self) -> bool:
        return (
            self.refused == 0
            and self.answered_per_s >= 0.97 * self.rate
            and self.late_p99_s < LATE_BOUND_S
            and max(self.worst_lag.values(), default=0.0) < LAG_BOUND_S
            and self.dead_lettered == 0
        )

    def __str__(self) -> str:
        lag = max(self.worst_lag.items(), key=lambda kv: kv[1], default=("-", 0.0))
        return (
            f"# {self.rate:.0f}/s: answered {self.answered_per_s:.0f}/s, p99 late {self.late_p99_s * 1000:.0f} ms, "
            f"{self.refused} refused, worst lag {lag[1]:.1f}s ({lag[0]}), {self.dead_lettered} dead-lettered"
            f" -> {'held' if self.held else 'did not hold'}"
        )


@dataclass
class Driver:
    demo: Demo
    keys_port: int
    buyers: list[Customer]
    lag: Lag
    bootstrap: str
    stack: Stack

    async def trial(self, rate: float, seconds: float, *, track: bool = False) -> Trial:
        await self.settle()
        dlq_before = await dead_letters(self.bootstrap)
        self.lag.reset()
        stop = asyncio.Event()
        buying = asyncio.create_task(a_purchase_a_second(self.demo, "e2e", stop.is_set))
        usage = Usage(self.stack) if track else None
        watching = asyncio.create_task(usage.watch()) if usage else None
        started = time.time()
        answered = await FixedRate(self.keys_port, self.buyers, rate, seconds).run()
        elapsed = time.time() - started
        used = usage.report() if usage else None
        if watching:
            watching.cancel()
        stop.set()
        await buying
        await asyncio.sleep(2)  # the lag of the last second is seen
        trial = Trial(
            rate,
            len(answered) / elapsed,
            latency_ms([a.at - a.due for a in answered])["p99_ms"] / 1000,
            sum(not a.ok for a in answered),
            dict(self.lag.worst),
            await dead_letters(self.bootstrap) - dlq_before,
            used,
        )
        print(trial, flush=True)
        return trial

    async def settle(self, timeout: float = 60) -> None:
        """Wait for every consumer to catch up after the previous trial."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.lag.reset()
            await asyncio.sleep(2)
            if max(self.lag.worst.values(), default=0.0) < 1:
                return


async def measure(stack: Stack) -> None:
    ep = stack.endpoints()
    async with Demo(ep, say=lambda _: None, http=http()) as demo:
        buyers = await customers(demo, "bench", 18) + await customers(demo, "bench-metered", 2)
        lag = Lag(ep["kafka"])
        following = asyncio.create_task(lag.follow())
        driver = Driver(demo, int(ep["keys"].rsplit(":", 1)[1]), buyers, lag, ep["kafka"], stack)
        await FixedRate(driver.keys_port, buyers, 500, 5).run()  # warm-up

        keys_file = stack.cfg.state_dir / "bench-keys.txt"
        keys_file.write_text("".join(f"{c.key}\n" for c in buyers))
        flat = await asyncio.to_thread(wrk, "validate.lua", driver.keys_port, 10, env={"KEYS_FILE": str(keys_file)})
        if flat["errors"]:
            raise SystemExit(f"{flat['errors']} validations flat out were not answered valid")
        capacity = flat["rate"]
        print(f"# flat out: {capacity:.0f} validations/s", flush=True)

        held, failed, rate = 0.0, None, FIRST_RATE
        while failed is None:
            if (await driver.trial(rate, TRIAL_SECONDS)).held:
                held, rate = rate, rate * 2
            else:
                failed = rate
        if not held:
            raise SystemExit(f"not even {FIRST_RATE}/s held (the limit: {capacity:.0f}/s)")
        for _ in range(2):
            middle = (held + failed) / 2
            if (await driver.trial(middle, TRIAL_SECONDS)).held:
                held = middle
            else:
                failed = middle

        for _ in range(5):
            hold = await driver.trial(held, HOLD_SECONDS, track=True)
            if hold.held:
                break
            held *= 0.9
        following.cancel()

    print(f"# {machine()}")
    figure("e2e.validate_capacity_per_s", capacity, "validations/s")
    if not hold.held:
        raise SystemExit("no rate held for 2 minutes")
    figure("e2e.sustained_validations_per_s", held, "validations/s")
    figure("e2e.sustained_vs_capacity", held / capacity, "x")
    figure("e2e.validate_p99_ms", hold.late_p99_s * 1000, "ms")
    for name, use in (hold.usage or {}).items():
        figure(f"e2e.{name}_cpu_cores", use["cpu_cores"], "cores")
        figure(f"e2e.{name}_mem_mib", use["mem_mib"], "MiB")


def main() -> None:
    with system_stack() as stack:
        asyncio.run(measure(stack))


if __name__ == "__main__":
    main()
