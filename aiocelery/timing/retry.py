"""The retry policy: a pure function from (options, retries so far, error) to "retry in N s" or "stop".

Backoffs are Machinery's policy (Fibonacci) plus fixed and exponential, each capped at
``max_s`` and with full jitter by default (a uniform draw in [0, delay]) so a burst of failures
does not retry in lockstep.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Backoff = Literal["fixed", "exponential", "fibonacci"]
BACKOFFS: tuple[Backoff, ...] = ("fixed", "exponential", "fibonacci")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a task is retried: at most ``max_retries`` times, waiting per ``backoff``."""

    max_retries: int = 3
    backoff: Backoff = "exponential"
    base_s: float = 1.0
    """The first delay (fixed: every delay)."""
    max_s: float = 600.0
    """No delay is longer than this."""
    jitter: bool = True
    """Full jitter: each delay is drawn uniformly from [0, computed delay]."""
    autoretry_for: tuple[type[BaseException], ...] = ()
    """Exceptions retried automatically (besides an explicit ``raise Retry(...)``)."""
    dont_autoretry_for: tuple[type[BaseException], ...] = ()
    """Exceptions never retried automatically, even if they match ``autoretry_for``."""

    def __post_init__(self) -> None:
        if self.backoff not in BACKOFFS:
            raise ValueError(f"retry_backoff must be one of {', '.join(BACKOFFS)}, got {self.backoff!r}")
        if self.max_retries < 0 or self.base_s < 0 or self.max_s < 0:
            raise ValueError("max_retries, retry_backoff_s and retry_backoff_max_s must be >= 0")

    def delay_bound(self, retries: int) -> float:
        """The un-jittered delay before retry number ``retries + 1`` (``retries`` done so far)."""
        if self.backoff == "fixed":
            delay = self.base_s
        elif self.backoff == "exponential":
            delay = self.base_s * 2 ** min(retries, 64)
        else:
            delay = self.base_s * fibonacci(retries + 1)
        return min(delay, self.max_s)

    def delay(self, retries: int, rng: random.Random | None = None) -> float:
        """The delay before the next retry, jittered when ``jitter`` is on."""
        bound = self.delay_bound(retries)
        return (rng or random).uniform(0, bound) if self.jitter else bound

    def wants(self, exc: BaseException) -> bool:
        """True when ``exc`` is to be retried automatically."""
        return isinstance(exc, self.autoretry_for) and not isinstance(exc, self.dont_autoretry_for)


def fibonacci(n: int) -> int:
    """The n-th Fibonacci number, 1-based: 1, 1, 2, 3, 5, 8, ... (capped to stay finite)."""
    a, b = 1, 1
    for _ in range(max(0, min(n, 90) - 1)):
        a, b = b, a + b
    return a


@dataclass(frozen=True, slots=True)
class Decision:
    """Retry after ``countdown_s``, or give up (``retry`` False) with the final error."""

    retry: bool
    countdown_s: float = 0.0


def decide(policy: RetryPolicy, retries: int, exc: BaseException, *, explicit_countdown: float | None = None,
           explicit: bool = False, rng: random.Random | None = None) -> Decision:
    """Whether and when to retry after ``exc``, given ``retries`` done so far."""
    if not explicit and not policy.wants(exc):
        return Decision(False)
    if retries >= policy.max_retries:
        return Decision(False)
    countdown = explicit_countdown if explicit_countdown is not None else policy.delay(retries, rng)
    return Decision(True, max(0.0, countdown))


ExceptionTypes = Sequence[type[BaseException]] | type[BaseException] | None


def exception_types(value: ExceptionTypes) -> tuple[type[BaseException], ...]:
    """Normalize an ``autoretry_for``-style option to a tuple of exception classes."""
    if value is None:
        return ()
    types = (value,) if isinstance(value, type) else tuple(value)
    for t in types:
        if not (isinstance(t, type) and issubclass(t, BaseException)):
            raise TypeError(f"autoretry_for/dont_autoretry_for take exception classes, got {t!r}")
    return types
