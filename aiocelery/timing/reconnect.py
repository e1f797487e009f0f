"""Capped, jittered exponential backoff for loops that must survive connection loss."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(slots=True)
class ReconnectDelay:
    """Delays of ``base * 2**n`` seconds capped at ``cap``, each drawn between half and all of
    that (jitter); ``reset()`` on success."""

    base: float = 0.1
    cap: float = 5.0
    rng: random.Random | None = None
    """Injected for tests; None uses the ``random`` module (cheap to create on hot paths)."""
    failures: int = 0

    def next_delay(self) -> float:
        """The delay before the next try; each call counts one more failure."""
        ceiling = min(self.cap, self.base * (2 ** min(self.failures, 30)))
        self.failures += 1
        return (self.rng or random).uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        """Forget past failures."""
        self.failures = 0
