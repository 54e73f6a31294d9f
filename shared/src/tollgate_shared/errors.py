"""Transient or permanent: whether a failure will go away if the same work is tried later.

A consumer retries transient failures for as long as it takes (the database, the broker
or the mail server is away, a lock was lost); anything else is permanent for the record
that caused it, which is set aside in its topic's dead-letter queue so the rest can go on.
"""

import asyncpg
from aiokafka.errors import KafkaError


class Transient(Exception):
    """Raise (or raise from) this to say: the work is right, the moment was wrong; try again."""


# Classes 08 (connection), 40 (transaction rollback: serialization, deadlock), 53
# (insufficient resources), 57 (operator intervention: shutdown, statement timeout).
_TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57")


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, Transient | OSError | TimeoutError | asyncpg.InterfaceError):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        return str(exc.sqlstate or "")[:2] in _TRANSIENT_SQLSTATE_CLASSES
    if isinstance(exc, KafkaError):
        return bool(exc.retriable)
    cause = exc.__cause__
    return cause is not None and is_transient(cause)
