"""The reliable subscriber, with FastStream's in-memory broker (unit level: handlers are fakes)."""

import json
from collections.abc import Callable

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from prometheus_client import REGISTRY
from pydantic import BaseModel

from tollgate_shared.bus import subscribe
from tollgate_shared.contracts.topics import Topic

TOPIC = Topic("unit.events")


def counted(name: str) -> float:
    return REGISTRY.get_sample_value(name, {"topic": TOPIC.name, "group": "g"}) or 0.0


@pytest.fixture
def counts() -> Callable[[], dict[str, float]]:
    """What this topic's consumer metrics moved by since the test began."""
    names = ["tollgate_consumed_total", "tollgate_consumer_retries_total", "tollgate_dead_lettered_total"]
    start = {n: counted(n) for n in names}
    return lambda: {n.removeprefix("tollgate_").removesuffix("_total"): counted(n) - start[n] for n in names}


class Thing(BaseModel):
    n: int


class Recorder:
    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.seen: list[Thing] = []
        self.calls = 0

    async def __call__(self, thing: Thing) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError("transient")
        self.seen.append(thing)


def wired(handler: Recorder) -> tuple[KafkaBroker, list[bytes]]:
    broker = KafkaBroker()
    dead: list[bytes] = []
    subscribe(broker, TOPIC, group_id="g", parse=Thing.model_validate_json, handle=handler, backoff_s=0)

    @broker.subscriber(TOPIC.dlq)
    async def dlq(msg: KafkaMessage) -> None:
        dead.append(msg.body)

    return broker, dead


class TestReliableSubscriber:
    async def test_delivers_parsed_contracts(self, counts: Callable[[], dict[str, float]]) -> None:
        handler = Recorder()
        broker, dead = wired(handler)
        async with TestKafkaBroker(broker) as br:
            await br.publish(json.dumps({"n": 1}).encode(), TOPIC.name)
        assert handler.seen == [Thing(n=1)]
        assert dead == []
        assert counts() == {"consumed": 1, "consumer_retries": 0, "dead_lettered": 0}

    async def test_retries_a_failing_handler_then_succeeds(self, counts: Callable[[], dict[str, float]]) -> None:
        handler = Recorder(failures=2)
        broker, dead = wired(handler)
        async with TestKafkaBroker(broker) as br:
            await br.publish(json.dumps({"n": 2}).encode(), TOPIC.name)
        assert handler.seen == [Thing(n=2)]
        assert handler.calls == 3
        assert dead == []
        assert counts() == {"consumed": 1, "consumer_retries": 2, "dead_lettered": 0}

    async def test_a_handler_that_keeps_failing_goes_to_the_dlq(self, counts: Callable[[], dict[str, float]]) -> None:
        handler = Recorder(failures=99)
        broker, dead = wired(handler)
        async with TestKafkaBroker(broker) as br:
            await br.publish(json.dumps({"n": 3}).encode(), TOPIC.name)
        assert handler.calls == 3
        assert handler.seen == []
        assert [json.loads(d) for d in dead] == [{"n": 3}]
        assert counts() == {"consumed": 0, "consumer_retries": 2, "dead_lettered": 1}

    @pytest.mark.parametrize("body", [b"not json", b'{"n": "three"}'])
    async def test_an_unparseable_message_goes_to_the_dlq_untried(
        self, body: bytes, counts: Callable[[], dict[str, float]]
    ) -> None:
        handler = Recorder()
        broker, dead = wired(handler)
        async with TestKafkaBroker(broker) as br:
            await br.publish(body, TOPIC.name)
        assert handler.calls == 0
        assert dead == [body]
        assert counts() == {"consumed": 0, "consumer_retries": 0, "dead_lettered": 1}
