import time

from tollgate_usage_sync.ratelimit import TokenBucket


class TestTokenBucket:
    async def test_a_burst_passes_then_calls_are_paced_at_the_rate(self) -> None:
        bucket = TokenBucket(rate_per_s=50, burst=5)
        started = time.monotonic()
        for _ in range(5):
            await bucket.take()
        assert time.monotonic() - started < 0.05  # the burst
        for _ in range(10):
            await bucket.take()
        assert time.monotonic() - started >= 10 / 50 * 0.9  # then 50 per second
