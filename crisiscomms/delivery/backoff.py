"""How long to wait before resending: exponential backoff with full jitter, honouring
``Retry-After`` (the send loop is :func:`crisiscomms.delivery.sender.send_once`)."""

from __future__ import annotations

from collections.abc import Callable


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

