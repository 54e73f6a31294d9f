import asyncpg
import pytest
from aiokafka.errors import KafkaConnectionError, RecordTooLargeError

from tollgate_shared.errors import Transient, is_transient


@pytest.mark.parametrize(
    "exc",
    [
        Transient("later"),
        ConnectionRefusedError(),
        TimeoutError(),
        asyncpg.exceptions.ConnectionDoesNotExistError("gone"),
        asyncpg.exceptions.SerializationError("raced"),
        asyncpg.exceptions.AdminShutdownError("restarting"),
        asyncpg.exceptions.TooManyConnectionsError("full"),
        KafkaConnectionError(),
    ],
)
def test_what_will_work_later_is_transient(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("bad data"),
        KeyError("bug"),
        asyncpg.exceptions.UniqueViolationError("duplicate"),
        asyncpg.exceptions.CheckViolationError("refused"),
        RecordTooLargeError(),
    ],
)
def test_what_will_fail_again_is_permanent(exc: BaseException) -> None:
    assert not is_transient(exc)


def test_a_failure_caused_by_a_transient_one_is_transient() -> None:
    outer = RuntimeError("wrapped")
    outer.__cause__ = ConnectionResetError()
    assert is_transient(outer)
