"""The stack's broker as the services meet it: SASL_SSL with SCRAM-SHA-512, a certificate
from the stack's own authority, and one user per service held to its ACLs. Every service
of the test stack, and so the demo and every e2e test, runs over it: that they all work
is the proof each user may do what its service needs; here, that it may do no more."""

import importlib
import ssl
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    TopicAuthorizationFailedError,
)

from tollgate_devstack.stack import KAFKA_USERS, Stack
from tollgate_shared.acls import grant
from tollgate_shared.settings import ServiceSettings
from tollgate_shared.topics import all_acls


@pytest.fixture
def launcher(stack: dict[str, Any]) -> Stack:
    stack_: Stack = stack["launcher"]
    if not stack_.own_kafka:
        pytest.skip("Kafka came from outside the stack: its listeners are not the stack's")
    return stack_


def settings_of(launcher: Stack, service: str, **overrides: Any) -> ServiceSettings:
    """`service`'s settings as the stack starts it, with `overrides`."""
    env = launcher.env_for(service, launcher.cfg.database_url, launcher.cfg.kafka_bootstrap)
    prefix = service.upper() + "_"
    fields = {k.removeprefix(prefix).lower(): v for k, v in env.items() if k.startswith(prefix)}
    settings_type = importlib.import_module(f"tollgate_{service}.config").Settings
    return settings_type(**(fields | overrides))  # type: ignore[no-any-return]


async def reaches(bootstrap: str, **options: Any) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=5000, **options)
    try:
        await producer.start()
        await producer.client.fetch_all_metadata()
    finally:
        await producer.stop()


def test_every_service_is_told_to_use_sasl_ssl_as_its_own_user(launcher: Stack) -> None:
    for name, user in KAFKA_USERS.items():
        env = launcher.env_for(name, launcher.cfg.database_url, launcher.cfg.kafka_bootstrap)
        prefix = name.upper() + "_"
        assert env[prefix + "KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert env[prefix + "KAFKA_BOOTSTRAP_SERVERS"] == launcher.cfg.kafka_secure_bootstrap
        assert env[prefix + "KAFKA_SASL_USERNAME"] == user


async def test_a_service_logs_in_with_its_credentials_and_the_stacks_ca(launcher: Stack) -> None:
    s = settings_of(launcher, "ledger")
    await reaches(s.kafka_bootstrap_servers, **s.kafka_options())


async def test_a_wrong_password_is_refused(launcher: Stack) -> None:
    s = settings_of(launcher, "ledger", kafka_sasl_password="not-the-password-at-all-0123456789")
    with pytest.raises(KafkaError):
        await reaches(s.kafka_bootstrap_servers, **s.kafka_options())


async def test_a_broker_certificate_from_another_authority_is_refused(launcher: Stack, tmp_path: Any) -> None:
    from tollgate_devstack.tls import ensure_certificates

    s = settings_of(launcher, "ledger", kafka_ssl_cafile=ensure_certificates(tmp_path / "other").ca)
    with pytest.raises((KafkaConnectionError, ssl.SSLError)):
        await reaches(s.kafka_bootstrap_servers, **s.kafka_options())


async def test_plaintext_is_not_spoken_on_the_secure_listener(launcher: Stack) -> None:
    with pytest.raises(KafkaConnectionError):
        await reaches(launcher.cfg.kafka_secure_bootstrap)


@pytest.mark.parametrize("topic", ["payments.events", "keys.events", "usage.recorded"])
async def test_a_service_may_not_write_what_another_publishes(launcher: Stack, topic: str) -> None:
    # The ledger reads payments.events: it sees the topic, and still cannot forge a payment.
    s = settings_of(launcher, "ledger")
    producer = AIOKafkaProducer(
        bootstrap_servers=s.kafka_bootstrap_servers, request_timeout_ms=5000, **s.kafka_options()
    )
    await producer.start()
    try:
        assert await producer.partitions_for("ledger.balances")  # its own topic: described, so allowed
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(topic, b"{}", key=b"cus_forged")
    finally:
        await producer.stop()


@pytest.mark.parametrize(
    ("topic", "group", "refusal"),
    [
        ("keys.events", "ledger.probe", TopicAuthorizationFailedError),  # not a topic the ledger consumes
        ("payments.events", "keys.probe", GroupAuthorizationFailedError),  # another service's group
        ("payments.events", None, None),  # its own topic, in its own group: allowed
    ],
)
async def test_a_service_reads_only_its_topics_in_its_own_groups(
    launcher: Stack, topic: str, group: str | None, refusal: type[Exception] | None
) -> None:
    s = settings_of(launcher, "ledger")
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=s.kafka_bootstrap_servers,
        group_id=group or "ledger.probe",
        enable_auto_commit=False,
        auto_offset_reset="latest",
        request_timeout_ms=5000,
        **s.kafka_options(),
    )
    try:
        if refusal is None:
            await consumer.start()
            await consumer.getmany(timeout_ms=1000)
            assert consumer.assignment()
        else:
            with pytest.raises(refusal):
                await consumer.start()  # joining the group is where the broker refuses
                await consumer.getmany(timeout_ms=5000)
    finally:
        await consumer.stop()


async def test_granting_again_changes_nothing(launcher: Stack) -> None:
    acls = all_acls()
    assert await grant(launcher.cfg.kafka_bootstrap, acls) == len(acls)
