"""One socket write per response instead of two.

uvicorn writes a response's status line and headers, then its body, with two
`transport.write()` calls, and on uvloop each is a `send()` system call of its own. The
transport here holds what is written during one turn of the event loop and sends it
at the end of that turn, in one call: half the system calls on the hot path of
every small answer. Nothing waits longer than the current turn of the loop.
"""

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """A transport whose writes within one loop turn leave as one write."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop = transport, loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)  # one item: returned as it is, not copied
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self._flush()  # a close after a response must not drop the response
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        # Everything else (reading, flow control, peer address, abort) is the socket's own.
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing through a CoalescingTransport."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # uvloop's transports implement asyncio.Transport without subclassing it.
        super().connection_made(CoalescingTransport(transport, asyncio.get_running_loop()))  # type: ignore[arg-type]
