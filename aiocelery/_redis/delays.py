"""Jittered, capped exponential delays between the client's reconnect attempts.

The client's own (``_redis`` imports nothing from the rest of aiocelery); the same policy as
``aiocelery.timing.reconnect.Backoff``.
"""

from __future__ import annotations

import random


class RetryDelays:
    """Delays of ``base * 2**n`` seconds with jitter (between half and all of it), capped at ``cap``."""

    __slots__ = ("_base", "_cap", "_failures")

    def __init__(self, base: float = 0.1, cap: float = 5.0) -> None:
        self._base = base
        self._cap = cap
        self._failures = 0

    def next(self) -> float:
        """The delay before the next attempt; each call counts one more failure."""
        ceiling = min(self._cap, self._base * (2 ** min(self._failures, 30)))
        self._failures += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        """Forget past failures (after a success)."""
        self._failures = 0
