"""Whose address an anonymous checkout counts against, behind proxies or not."""

import pytest
from starlette.requests import Request

from tollgate_shared.http import client_address


def request(peer: str, forwarded: str | None = None) -> Request:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return Request({"type": "http", "client": (peer, 5555), "headers": headers})


@pytest.mark.parametrize(
    ("peer", "forwarded", "proxies", "expected"),
    [
        ("203.0.113.7", None, 0, "203.0.113.7"),
        ("203.0.113.7", "1.2.3.4", 0, "203.0.113.7"),  # nobody trusted: a header says nothing
        ("10.0.0.2", "198.51.100.9", 1, "198.51.100.9"),  # what the ingress saw
        ("10.0.0.2", "6.6.6.6, 198.51.100.9", 1, "198.51.100.9"),  # the caller's own entry is ignored
        ("10.0.0.2", "6.6.6.6, 198.51.100.9, 10.0.0.1", 2, "198.51.100.9"),
        ("10.0.0.2", None, 1, "10.0.0.2"),  # no header where one was expected: the peer
    ],
)
def test_only_what_trusted_proxies_wrote_is_believed(
    peer: str, forwarded: str | None, proxies: int, expected: str
) -> None:
    assert client_address(request(peer, forwarded), proxies) == expected
