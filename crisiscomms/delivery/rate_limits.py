"""Rate limits per channel: a token bucket in one process, or a Prefect global concurrency
limit shared by every worker (the scale-out path, ``docs/scaling.md``).

The sender takes one slot per provider request (:func:`channel_bucket`); a request carries a
whole batch (up to 1,000 email recipients), so limits are request rates, never per recipient.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol


class RateLimiter(Protocol):
    """Blocks until one request of a channel may go; returns the seconds waited."""

    def acquire(self) -> float: ...


class TokenBucket:
    """``rate_per_s`` requests per second with a burst of ``burst``; thread-safe, one process.

    ``clock`` and ``sleep`` are injectable so tests are deterministic (no wall clock)."""

    def __init__(self, rate_per_s: float, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.rate = rate_per_s
        self.capacity = max(1.0, burst if burst is not None else rate_per_s)
        self._tokens = self.capacity
        self._clock, self._sleep = clock, sleep
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping until there is one; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1.0
            wait_s = 0.0 if self._tokens >= 0 else -self._tokens / self.rate
        if wait_s > 0:
            self._sleep(wait_s)
        return wait_s

    def try_acquire(self) -> float:
        """Take one token if there is one (0.0); else take nothing and return the seconds until
        there will be one (a receiver's ``Retry-After``: it refuses instead of waiting)."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self.rate


class GlobalRateLimit:
    """One slot of a Prefect global concurrency limit with slot decay, shared by every worker
    process of a Prefect server (``prefect gcl create NAME --limit N
    --slot-decay-per-second R``: at most ``N`` at once, refilled at ``R`` per second).

    Each ``acquire`` is one call to the Prefect API, so use it for request rates (one email
    request carries up to 1,000 recipients), not per recipient. A limit that does not exist is
    an error (``strict``), never a silent "no limit"."""

    def __init__(self, name: str, *, timeout_s: float | None = 600.0,
                 take: Callable[[str, float | None], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name, self.timeout_s = name, timeout_s
        self._take = take or _prefect_rate_limit
        self._clock = clock

    def acquire(self) -> float:
        started = self._clock()
        self._take(self.name, self.timeout_s)
        return self._clock() - started


def _prefect_rate_limit(name: str, timeout_s: float | None) -> None:
    from prefect.concurrency.sync import rate_limit

    rate_limit(name, occupy=1, timeout_seconds=timeout_s, strict=True)


_BUCKETS: dict[tuple[str, float], TokenBucket] = {}
_BUCKETS_LOCK = threading.Lock()
_GLOBAL_LIMITS: dict[str, GlobalRateLimit] = {}


def use_global_rate_limits(names: Mapping[str, str], *,
                           take: Callable[[str, float | None], None] | None = None) -> None:
    """From now on, this process takes ``channel``'s requests from the Prefect global
    concurrency limit ``names[channel]`` instead of its own bucket (the scale-out path: every
    worker's flow run calls this; ``flows/run_playbook.py``). An empty mapping restores the
    per-process buckets. ``take`` replaces the call to Prefect (see :class:`GlobalRateLimit`)."""
    with _BUCKETS_LOCK:
        _GLOBAL_LIMITS.clear()
        _GLOBAL_LIMITS.update({channel: GlobalRateLimit(name, take=take)
                               for channel, name in names.items()})


BURST = 10
"""Requests a channel's bucket lets go at once before its rate applies: one stage's X posts in
every language (and their thread parts) go together, then 1 per second. X's own quota is per
15-minute window; its 429 with ``x-rate-limit-reset`` is honoured on top of this."""


def channel_bucket(channel: str, rate_per_s: float | None) -> RateLimiter | None:
    """The limiter of a channel for this process: its Prefect global concurrency limit when
    :func:`use_global_rate_limits` named one (shared by all workers), else the process-wide
    token bucket (every task and thread of this process shares it; ``None``: no limit).

    Single process (``crisiscomms`` CLI, the embedded default): the bucket. Several workers:
    the global limit, whose rate is set where it is created (``flows/deploy.py``), so
    ``rate_per_s`` is ignored there (``docs/scaling.md``).
    """
    with _BUCKETS_LOCK:
        shared = _GLOBAL_LIMITS.get(channel)
        if shared is not None:
            return shared
        if rate_per_s is None:
            return None
        bucket = _BUCKETS.get((channel, rate_per_s))
        if bucket is None:
            bucket = _BUCKETS[(channel, rate_per_s)] = TokenBucket(
                rate_per_s, burst=max(BURST, rate_per_s))
        return bucket
