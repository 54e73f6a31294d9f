"""An HTTP/1.1 server that answers every request with the same valid-looking validation.

`make bench-keys` drives it with the load generator at the rate it drives the keys
service: the latency seen here is the harness's own floor (the load generator, loopback
TCP and the VM's scheduling of both), measured in the same run as the service. Its
answer is the size of a real validation's, and has the `"isValid":true` the load
generator checks for.
"""

import argparse
import asyncio
from typing import cast

import uvloop

BODY = (
    b'{"isValid":true,"unitsConsumed":1,"keyId":"00000000-0000-4000-8000-000000000000","quota":null,"expiresAt":null}'
)
ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(BODY), BODY)


def content_length(head: bytes) -> int:
    """The Content-Length of an HTTP/1.1 message head; 0 if it has none."""
    lines = head.split(b"\r\n")[1:]  # after the request or status line
    return next((int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length:")), 0)


class FixedAnswer(asyncio.Protocol):
    def __init__(self, answer: bytes = ANSWER) -> None:
        self.answer = answer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport, self.buffer = cast(asyncio.Transport, transport), b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            length = content_length(self.buffer[:end])
            if len(self.buffer) < end + 4 + length:
                return  # the body is still on its way
            self.buffer = self.buffer[end + 4 + length :]
            self.transport.write(self.answer)


async def serve(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(FixedAnswer, "127.0.0.1", port)
    await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    uvloop.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
