"""structlog as JSON lines, with context variables and secret redaction."""

import json
import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# An API key in any log line is a leak; so is a webhook secret or a bearer token.
_SECRET_PATTERNS = [
    re.compile(r"tg_(?:live|test)_[0-9A-Za-z]+"),
    re.compile(r"whsec_[0-9A-Za-z]+"),
    re.compile(r"sk_(?:live|test)_[0-9A-Za-z]+"),
    re.compile(r"(?i)bearer\s+[^\s\"']+"),
    re.compile(r"(?<=://)[^:/@\s]+:[^@\s]+(?=@)"),  # user:password in a connection string
]
_SECRET_KEYS = re.compile(r"(?i)(secret|password|token|api_?key|authorization|plaintext)")
REDACTED = "[redacted]"


def redact_text(text: str) -> str:
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: REDACTED if _SECRET_KEYS.search(str(k)) else _redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    return value


def redact_secrets(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: drop secret-named fields and mask secret-shaped strings."""
    for key in list(event_dict):
        if _SECRET_KEYS.search(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _redact(event_dict[key])
    return event_dict


def configure_logging(service: str, level: str = "INFO") -> None:
    numeric = logging.getLevelName(level.upper())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_secrets,
        structlog.processors.JSONRenderer(),
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # No file given: print to whatever sys.stdout is at the time of each call.
        logger_factory=structlog.PrintLoggerFactory(),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    # Libraries log through stdlib logging; route them through the same redaction.
    handler = _StdoutHandler()
    handler.setFormatter(_RedactingFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if numeric <= logging.INFO else numeric)


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the current sys.stdout, not the one there was at configuration time."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


class _RedactingFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "event": redact_text(record.getMessage()),
            "level": record.levelname.lower(),
            "logger": record.name,
            "service": self._service,
        }
        if record.exc_info:
            entry["exception"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(entry)


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
