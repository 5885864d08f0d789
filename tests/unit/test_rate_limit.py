"""Per-channel rate limits: the in-process token bucket (injected clock, no wall clock) and the
switch to a Prefect global concurrency limit shared by every worker."""

from __future__ import annotations

import threading

import pytest

from crisiscomms.delivery.rate_limits import (
    GlobalRateLimit,
    TokenBucket,
    channel_bucket,
    use_global_rate_limits,
)


class FakeClock:
    """A clock that only moves when the bucket sleeps (or the test advances it)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.now += seconds


def bucket(rate: float, burst: float | None = None) -> tuple[TokenBucket, FakeClock]:
    clock = FakeClock()
    return TokenBucket(rate, burst, clock=clock, sleep=clock.sleep), clock


def test_a_full_bucket_serves_its_burst_without_waiting() -> None:
    tb, clock = bucket(5.0)
    assert [tb.acquire() for _ in range(5)] == [0.0] * 5
    assert clock.slept == []


def test_past_the_burst_requests_are_spaced_at_the_rate() -> None:
    tb, clock = bucket(4.0, burst=1)
    start = clock.now
    waits = [tb.acquire() for _ in range(9)]
    assert waits[0] == 0.0
    assert waits[1:] == pytest.approx([0.25] * 8)
    assert clock.now - start == pytest.approx(2.0)  # 9 requests at 4/s after a burst of 1


def test_idle_time_refills_up_to_capacity_only() -> None:
    tb, clock = bucket(2.0, burst=3)
    for _ in range(3):
        tb.acquire()
    clock.now += 3600.0  # an hour idle refills 3 tokens, not 7,200
    assert [tb.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert tb.acquire() == pytest.approx(0.5)


def test_a_slow_rate_below_one_per_second_keeps_a_burst_of_one() -> None:
    tb, _ = bucket(0.5)
    assert tb.capacity == 1.0
    assert tb.acquire() == 0.0
    assert tb.acquire() == pytest.approx(2.0)


def test_threads_share_one_bucket_and_queue_behind_each_other() -> None:
    """With time frozen, the k-th of 20 concurrent requests waits k/rate, whatever the
    interleaving: the debt is shared, never double-spent."""
    slept: list[float] = []
    lock = threading.Lock()

    def sleep(seconds: float) -> None:
        with lock:
            slept.append(seconds)

    tb = TokenBucket(10.0, burst=1, clock=lambda: 0.0, sleep=sleep)
    waits: list[float] = []

    def worker() -> None:
        for _ in range(5):
            w = tb.acquire()
            with lock:
                waits.append(w)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert sorted(waits) == pytest.approx([k / 10 for k in range(20)])
    assert sorted(slept) == pytest.approx([k / 10 for k in range(1, 20)])


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(0)


@pytest.mark.usefixtures("process_rate_limits")
def test_channel_bucket_is_one_per_channel_and_rate_in_a_process() -> None:
    a = channel_bucket("test-email", 7.0)
    assert isinstance(a, TokenBucket) and a.rate == 7.0
    assert channel_bucket("test-email", 7.0) is a
    assert channel_bucket("test-x", 7.0) is not a
    assert channel_bucket("test-email", None) is None


@pytest.mark.usefixtures("process_rate_limits")
def test_named_global_limits_replace_the_process_bucket_for_their_channels() -> None:
    use_global_rate_limits({"email": "crisiscomms-email-rate"})
    limiter = channel_bucket("email", 7.0)
    assert isinstance(limiter, GlobalRateLimit) and limiter.name == "crisiscomms-email-rate"
    assert channel_bucket("email", None) is limiter  # the server's limit, whatever the setting
    assert isinstance(channel_bucket("x", 1.0), TokenBucket)
    use_global_rate_limits({})
    assert isinstance(channel_bucket("email", 7.0), TokenBucket)


def test_global_rate_limit_takes_one_slot_per_request_and_reports_the_wait() -> None:
    clock = FakeClock()
    taken: list[tuple[str, float | None]] = []

    def take(name: str, timeout_s: float | None) -> None:
        taken.append((name, timeout_s))
        clock.now += 0.75  # the server made us wait

    limiter = GlobalRateLimit("crisiscomms-email-rate", timeout_s=30, take=take, clock=clock)
    assert limiter.acquire() == pytest.approx(0.75)
    assert limiter.acquire() == pytest.approx(0.75)
    assert taken == [("crisiscomms-email-rate", 30), ("crisiscomms-email-rate", 30)]


def test_global_rate_limit_errors_propagate() -> None:
    def take(name: str, timeout_s: float | None) -> None:
        raise TimeoutError(f"{name}: no slot within {timeout_s} s")

    with pytest.raises(TimeoutError, match="no slot"):
        GlobalRateLimit("missing", timeout_s=1, take=take).acquire()


def test_a_stage_of_posts_in_every_language_goes_at_once_then_the_rate_applies() -> None:
    from crisiscomms.delivery.rate_limits import BURST

    bucket = channel_bucket("test-burst", 1.0)
    assert isinstance(bucket, TokenBucket) and bucket.capacity == BURST
    assert channel_bucket("test-burst-fast", 50.0).capacity == 50.0  # type: ignore[union-attr]
