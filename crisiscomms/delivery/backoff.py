"""Retrying a channel send: exponential backoff with full jitter, honouring ``Retry-After``."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from crisiscomms.delivery.contract import Channel, DeliveryResult, OutboundBatch, Outcome


def backoff_delay(
    attempt: int,
    retry_after_s: float | None,
    *,
    base_delay_s: float,
    max_delay_s: float,
    rng: Callable[[], float],
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    Without a provider hint: full jitter, ``rng() * min(max_delay_s, base_delay_s * 2**(n-1))``.
    With ``retry_after_s``: at least that long (the provider will refuse earlier), plus up to
    ``base_delay_s`` of jitter so workers released by the same reset do not all hit at once;
    never more than ``max_delay_s``.
    """
    if retry_after_s is not None:
        return min(max_delay_s, max(0.0, retry_after_s) + rng() * base_delay_s)
    ceiling = min(max_delay_s, base_delay_s * 2.0 ** (attempt - 1))
    return rng() * ceiling


def send_with_retry(
    channel: Channel,
    batch: OutboundBatch,
    *,
    max_attempts: int,
    base_delay_s: float = 0.2,
    max_delay_s: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
    rng: Callable[[], float] = random.random,
) -> tuple[DeliveryResult, int]:
    """Send ``batch``, retrying retryable outcomes; answer (last result, attempts made).

    A sent or permanent result returns at once; after ``max_attempts`` retryable results the
    last one is returned (still retryable: the ledger may try again later).
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    if base_delay_s < 0 or max_delay_s < 0:
        raise ValueError("delays must not be negative")
    attempt = 0
    while True:
        attempt += 1
        result = channel.send(batch)
        if result.outcome is not Outcome.retryable or attempt >= max_attempts:
            return result, attempt
        sleep(
            backoff_delay(
                attempt,
                result.retry_after_s,
                base_delay_s=base_delay_s,
                max_delay_s=max_delay_s,
                rng=rng,
            )
        )
