"""Kafka subscribers of the notifier."""

from collections.abc import Callable

from faststream.kafka import KafkaBroker

from tollgate_shared.bus import subscribe
from tollgate_shared.contracts import KeyIssued, KeysEvent, KeyToppedUp, keys_event
from tollgate_shared.contracts.topics import KEYS_EVENTS

from .handlers import NotifierDeps, email_new_key, email_top_up

GROUP = "notifier"


def register(broker: KafkaBroker, deps: Callable[[], NotifierDeps]) -> None:
    async def on_key_event(event: KeysEvent) -> None:
        if isinstance(event, KeyIssued):
            await email_new_key(event, deps())
        elif isinstance(event, KeyToppedUp):
            await email_top_up(event, deps())

    subscribe(broker, KEYS_EVENTS, group_id=GROUP, parse=keys_event.validate_json, handle=on_key_event)
