"""Rate limits by key (a client's address, a mailbox) for the public HTTP apps: one token
bucket per key, refusing instead of waiting (the caller answers 429 with ``Retry-After``).

The map of buckets is bounded (``max_keys``, least recently used dropped first), so a crowd of
distinct keys costs bounded memory; a dropped key starts again with a full burst.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from crisiscomms.delivery.rate_limits import TokenBucket


class KeyedLimiter:
    """``burst`` requests per key at once, then ``rate_per_s``."""

    def __init__(self, rate_per_s: float, burst: int, *, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_s <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate_per_s must be positive, burst and max_keys at least 1")
        self.rate, self.burst, self.max_keys = rate_per_s, burst, max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, key: str) -> float:
        """0.0 and one request counted when ``key`` is under its limit; else the seconds
        until it will be (nothing counted)."""
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(self.rate, self.burst,
                                                          clock=self._clock)
                if len(self._buckets) > self.max_keys:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(key)
        return bucket.try_acquire()


def retry_after_header(wait_s: float) -> dict[str, str]:
    """``Retry-After`` in whole seconds (rounded up, at least 1)."""
    return {"Retry-After": str(max(1, math.ceil(wait_s)))}


@functools.lru_cache(maxsize=65_536)
def client_key(host: str | None) -> str:
    """The rate-limit key of a client address: an IPv4 address as it is, an IPv6 address by
    its /64 (one subscriber line gets a whole /64 and may use any address of it). Cached:
    parsing an address costs a request more than its rate limit does."""
    if not host:
        return "-"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address)
