"""Fault injection for the provider emulators: errors, hangs, resets, lost responses, limits.

`Faults` is the immutable description (what a drill or test asks for); `FaultInjector` is the
thread-safe state that draws from it (a seeded `random.Random` and a fixed-window rate limiter).
"""

from __future__ import annotations

import dataclasses
import enum
import math
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Faults:
    """What goes wrong on provider requests. All rates are fractions in [0, 1]."""

    error_rate: float = 0.0
    """Fraction of provider requests answered with one of `error_statuses`."""
    error_statuses: tuple[int, ...] = (429, 500, 503)
    timeout_rate: float = 0.0
    """Fraction of requests that hang `hang_s` seconds, then close with no response."""
    hang_s: float = 30.0
    reset_rate: float = 0.0
    """Fraction of requests whose connection is reset with no response; nothing recorded."""
    lost_response_rate: float = 0.0
    """Fraction of requests accepted and recorded, then closed with no response."""
    lost_response_delay_s: float = 0.0
    """How long a lost response holds the connection open, silent, before closing it: the
    client waits (and times out, or is killed meanwhile) while the provider has the request."""
    garbage_rate: float = 0.0
    """Fraction of requests accepted and recorded, then answered with the success status and a
    body that is not the provider's: half of them a non-JSON body, half a truncated response
    (``Content-Length`` promises more than is sent, then the connection closes)."""
    latency_ms: float = 0.0
    """Added to every provider request."""
    rate_limit: int | None = None
    """Provider requests allowed per `rate_window_s`; beyond it, 429 with provider headers."""
    rate_window_s: float = 1.0
    seed: int | None = None
    """Seed for a reproducible draw sequence."""
    pass_first: int = 0
    """The first N provider requests after these faults are installed pass untouched (rate
    limit aside), so a fault can land mid-sequence: the second post of a thread."""
    max_faults: int | None = None
    """At most this many random faults are injected, then requests pass (None: no limit):
    with ``pass_first``, exactly the request N + 1 goes wrong."""

    def __post_init__(self) -> None:
        rates = {
            "error_rate": self.error_rate,
            "timeout_rate": self.timeout_rate,
            "reset_rate": self.reset_rate,
            "lost_response_rate": self.lost_response_rate,
            "garbage_rate": self.garbage_rate,
        }
        for name, value in rates.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
        if sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError(
                "error_rate + timeout_rate + reset_rate + lost_response_rate + garbage_rate > 1")
        if self.error_rate > 0 and not self.error_statuses:
            raise ValueError("error_statuses must not be empty when error_rate > 0")
        for status in self.error_statuses:
            if not 400 <= status <= 599:
                raise ValueError(f"error_statuses must be 4xx/5xx codes, got {status!r}")
        if self.hang_s < 0 or self.latency_ms < 0 or self.lost_response_delay_s < 0:
            raise ValueError("hang_s, latency_ms and lost_response_delay_s must not be negative")
        if self.pass_first < 0 or (self.max_faults is not None and self.max_faults < 0):
            raise ValueError("pass_first and max_faults must not be negative")
        if self.rate_limit is not None and self.rate_limit < 0:
            raise ValueError("rate_limit must not be negative")
        if self.rate_window_s <= 0:
            raise ValueError("rate_window_s must be positive")

    @classmethod
    def from_dict(cls, data: object) -> Faults:
        """Build from JSON-like data; unknown fields or wrong types raise ValueError."""
        if not isinstance(data, dict):
            raise ValueError("faults must be a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(map(str, unknown))}")
        kwargs: dict[str, Any] = {}
        for name, value in data.items():
            kwargs[name] = _coerce(name, value)
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["error_statuses"] = list(self.error_statuses)
        return data


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _coerce(name: str, value: object) -> Any:
    if name == "error_statuses":
        if not isinstance(value, list | tuple) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise ValueError("error_statuses must be a list of integers")
        return tuple(value)
    if name in ("rate_limit", "seed", "max_faults"):
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        raise ValueError(f"{name} must be an integer or null")
    if name == "pass_first":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError("pass_first must be an integer")
    if not _is_number(value):
        raise ValueError(f"{name} must be a number")
    return float(value)  # type: ignore[arg-type]


class Outcome(enum.Enum):
    """What the injector decided for one provider request."""

    PASS = "pass"
    ERROR = "error"
    TIMEOUT = "timeout"
    RESET = "reset"
    LOST_RESPONSE = "lost_response"
    GARBAGE = "garbage"
    TRUNCATED = "truncated"
    RATE_LIMITED = "rate_limited"


@dataclass(frozen=True)
class RateWindow:
    """Rate-limit state to report in headers."""

    limit: int
    remaining: int
    reset_epoch: int
    """Epoch seconds when the current window ends."""
    retry_after_s: int


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    status: int | None = None
    window: RateWindow | None = None


@dataclass
class FaultInjector:
    """Thread-safe draws from a `Faults` description."""

    faults: Faults = field(default_factory=Faults)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _rng: random.Random = field(init=False, repr=False)
    _window_start: float = field(default=0.0, init=False, repr=False)
    _window_count: int = field(default=0, init=False, repr=False)
    _seen: int = field(default=0, init=False, repr=False)
    _injected: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.faults.seed)

    def replace(self, faults: Faults) -> None:
        """Install new faults; the random sequence and rate window start over."""
        with self._lock:
            self.faults = faults
            self._rng = random.Random(faults.seed)
            self._window_start = 0.0
            self._window_count = 0
            self._seen = 0
            self._injected = 0

    def current(self) -> Faults:
        with self._lock:
            return self.faults

    def decide(self) -> Decision:
        """Draw the outcome of one provider request (rate limit first, then random faults)."""
        with self._lock:
            faults = self.faults
            window = self._count_in_window(faults)
            if window is not None and window.remaining < 0:
                return Decision(Outcome.RATE_LIMITED, 429, dataclasses.replace(window, remaining=0))
            self._seen += 1
            if self._seen <= faults.pass_first or (
                    faults.max_faults is not None and self._injected >= faults.max_faults):
                return Decision(Outcome.PASS, window=_clamp(window))
            decision = self._draw(faults, window)
            if decision.outcome is not Outcome.PASS:
                self._injected += 1
            return decision

    def _draw(self, faults: Faults, window: RateWindow | None) -> Decision:
        draw = self._rng.random() if _any_random(faults) else 1.0
        threshold = faults.error_rate
        if draw < threshold:
            status = self._rng.choice(faults.error_statuses)
            return Decision(Outcome.ERROR, status, _clamp(window))
        threshold += faults.timeout_rate
        if draw < threshold:
            return Decision(Outcome.TIMEOUT, window=_clamp(window))
        threshold += faults.reset_rate
        if draw < threshold:
            return Decision(Outcome.RESET, window=_clamp(window))
        threshold += faults.lost_response_rate
        if draw < threshold:
            return Decision(Outcome.LOST_RESPONSE, window=_clamp(window))
        threshold += faults.garbage_rate
        if draw < threshold:
            kind = Outcome.GARBAGE if self._rng.random() < 0.5 else Outcome.TRUNCATED
            return Decision(kind, window=_clamp(window))
        return Decision(Outcome.PASS, window=_clamp(window))

    def window_now(self) -> RateWindow:
        """The current window, for a 429 that an error draw produced."""
        with self._lock:
            faults = self.faults
            limit = faults.rate_limit if faults.rate_limit is not None else 0
            now = time.monotonic()
            end = self._window_start + faults.rate_window_s
            if end <= now:
                end = now + faults.rate_window_s
            return _window(limit, 0, end, now)

    def _count_in_window(self, faults: Faults) -> RateWindow | None:
        if faults.rate_limit is None:
            return None
        now = time.monotonic()
        if self._window_count == 0 or now >= self._window_start + faults.rate_window_s:
            self._window_start = now
            self._window_count = 0
        self._window_count += 1
        remaining = faults.rate_limit - self._window_count
        return _window(faults.rate_limit, remaining, self._window_start + faults.rate_window_s, now)


def _any_random(faults: Faults) -> bool:
    return (
        faults.error_rate + faults.timeout_rate + faults.reset_rate + faults.lost_response_rate
        + faults.garbage_rate
    ) > 0


def _clamp(window: RateWindow | None) -> RateWindow | None:
    if window is None or window.remaining >= 0:
        return window
    return dataclasses.replace(window, remaining=0)


def _window(limit: int, remaining: int, end_monotonic: float, now_monotonic: float) -> RateWindow:
    seconds_left = max(0.0, end_monotonic - now_monotonic)
    return RateWindow(
        limit=limit,
        remaining=remaining,
        reset_epoch=math.ceil(time.time() + seconds_left),
        retry_after_s=max(1, math.ceil(seconds_left)),
    )
