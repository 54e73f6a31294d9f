"""The bench harness itself: the load generator sends every request on its schedule,
times it from that schedule, and counts an answer that is not a valid validation as an
error, so a benchmark figure is never a count of failures or a latency that hides
queueing."""

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest

from tollgate_bench import loadgen

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


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return loadgen.build(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.txt"
    path.write_text("tg_test_k1\ntg_test_k2\n")
    return path


async def drive(
    binary: Path, keys_file: Path, server: Callable[[], asyncio.Protocol], rate: float, seconds: float, connections: int
) -> tuple[int, dict[str, float], str]:
    """Run the generator against `server` on a loopback port: its exit code, what it
    printed, and what it said on stderr."""
    listener = await asyncio.get_running_loop().create_server(server, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        process = await asyncio.create_subprocess_exec(
            *loadgen.command(binary, port, keys_file, rate, seconds, connections),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        listener.close()
    assert process.returncode is not None
    return process.returncode, json.loads(out) if out else {}, err.decode()


class SlowAnswer(FixedAnswer):
    """Answers each request `delay` seconds after the previous answer on its connection."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay, self.next_at = delay, 0.0

    def data_received(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        self.next_at = max(self.next_at, loop.time()) + self.delay
        loop.call_at(self.next_at, self.transport.write, self.answer)


class Hangup(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.close()


async def test_every_scheduled_request_is_answered_and_timed(binary: Path, keys_file: Path) -> None:
    code, result, _ = await drive(binary, keys_file, FixedAnswer, rate=500, seconds=0.4, connections=4)
    assert code == 0
    assert result["requests"] == 200
    assert result["errors"] == 0
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["p999_ms"]
    assert 0.39 < result["seconds"] < 5


async def test_an_answer_that_is_not_a_valid_validation_counts_as_an_error(binary: Path, keys_file: Path) -> None:
    refused = b'{"isValid":false,"unitsConsumed":0,"reason":"not_found"}'
    answer = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(refused), refused)
    code, result, _ = await drive(binary, keys_file, lambda: FixedAnswer(answer), rate=500, seconds=0.4, connections=4)
    assert code == 0
    assert result["errors"] == result["requests"] == 200


async def test_a_slow_server_is_billed_for_the_queue_it_causes(binary: Path, keys_file: Path) -> None:
    # 100 requests due within 0.2 s, one connection, 10 ms an answer: the last is answered
    # about a second after it was due. A closed-loop client would report 10 ms for each.
    code, result, _ = await drive(binary, keys_file, lambda: SlowAnswer(0.01), rate=500, seconds=0.2, connections=1)
    assert code == 0
    assert result["requests"] == 100
    assert result["p99_ms"] > 700
    assert result["p50_ms"] > 300


async def test_a_connection_the_server_drops_ends_the_run_without_a_figure(binary: Path, keys_file: Path) -> None:
    code, result, err = await drive(binary, keys_file, Hangup, rate=500, seconds=0.4, connections=4)
    assert code == 1
    assert result == {}
    assert "closed a connection" in err
