"""The bench harness itself: the load generator counts what it was sent, and an answer
that is not a valid validation as an error, so a benchmark figure is never a count of
failures."""

import asyncio
import time

from tollgate_devstack.bench import fixed_answer, loadgen, ticker


async def drive(answer: bytes, rate: float = 500, seconds: float = 0.4) -> dict[str, float]:
    server = await asyncio.get_running_loop().create_server(lambda: fixed_answer.FixedAnswer(answer), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        return await loadgen.run("127.0.0.1", port, ["tg_test_k1", "tg_test_k2"], rate, seconds, connections=4)
    finally:
        server.close()
        await server.wait_closed()


async def test_every_scheduled_request_is_answered_and_timed() -> None:
    result = await drive(fixed_answer.ANSWER)
    assert result["requests"] == 200
    assert result["errors"] == 0
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["p999_ms"]


async def test_an_answer_that_is_not_a_valid_validation_counts_as_an_error() -> None:
    refused = b'{"isValid":false,"unitsConsumed":0,"reason":"not_found"}'
    answer = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(refused), refused)
    result = await drive(answer)
    assert result["errors"] == result["requests"] == 200


async def test_the_timer_hands_over_the_periods_a_busy_loop_missed() -> None:
    # A generator that falls behind must send the requests it is late for, not skip them.
    periods: list[int] = []
    interval_ns = 1_000_000
    with ticker.periodic(time.monotonic_ns() + interval_ns, interval_ns, periods.append):
        time.sleep(0.03)  # noqa: ASYNC251 -- blocking the loop for 30 periods is the point
        await asyncio.sleep(0.002)
    assert periods[0] >= 30
    assert sum(periods) >= 31
