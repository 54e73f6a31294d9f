"""The stack's broker as the services meet it: SASL_SSL with SCRAM-SHA-512, a certificate
from the stack's own authority, and one user per service. Every service of the test
stack, and so the demo and every e2e test, runs over it."""

import ssl
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError

from tollgate_devstack.stack import KAFKA_USERS, Stack
from tollgate_ledger.config import Settings as LedgerSettings


@pytest.fixture
def launcher(stack: dict[str, Any]) -> Stack:
    stack_: Stack = stack["launcher"]
    if not stack_.own_kafka:
        pytest.skip("Kafka came from outside the stack: its listeners are not the stack's")
    return stack_


def ledger_settings(launcher: Stack, **overrides: Any) -> LedgerSettings:
    env = launcher.env_for("ledger", launcher.cfg.database_url, launcher.cfg.kafka_bootstrap)
    fields = {k.removeprefix("LEDGER_").lower(): v for k, v in env.items() if k.startswith("LEDGER_")}
    return LedgerSettings(**(fields | overrides))


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
    s = ledger_settings(launcher)
    await reaches(s.kafka_bootstrap_servers, **s.kafka_options())


async def test_a_wrong_password_is_refused(launcher: Stack) -> None:
    s = ledger_settings(launcher, kafka_sasl_password="not-the-password-at-all-0123456789")
    with pytest.raises(KafkaError):
        await reaches(s.kafka_bootstrap_servers, **s.kafka_options())


async def test_a_broker_certificate_from_another_authority_is_refused(launcher: Stack, tmp_path: Any) -> None:
    from tollgate_devstack.tls import ensure_certificates

    s = ledger_settings(launcher, kafka_ssl_cafile=ensure_certificates(tmp_path / "other").ca)
    with pytest.raises((KafkaConnectionError, ssl.SSLError)):
        await reaches(s.kafka_bootstrap_servers, **s.kafka_options())


async def test_plaintext_is_not_spoken_on_the_secure_listener(launcher: Stack) -> None:
    with pytest.raises(KafkaConnectionError):
        await reaches(launcher.cfg.kafka_secure_bootstrap)
