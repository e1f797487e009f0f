"""Start admission: cluster-wide rate limits and per-key concurrency caps, as a protocol.

An ``Admission`` names what to check in the task's own terms (its name, its concurrency value);
each implementation maps that to its own storage (Redis keys in ``brokers/redis/limits.py``,
dictionaries in ``brokers/memory/limits.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from aiocelery.timing.rate import Rate

CAP_FULL = -1
"""``admit`` answer when the concurrency cap is full."""


@dataclass(frozen=True, slots=True)
class Admission:
    """What to check before task ``task_id`` of ``task_name`` starts: ``rate`` for the task name;
    at most ``limit`` runs under ``concurrency_value`` (None: no cap), each slot held
    ``slot_ttl_ms`` unless renewed."""

    task_id: str
    task_name: str
    rate: Rate | None = None
    concurrency_value: str | None = None
    limit: int = 0
    slot_ttl_ms: int = 0

    @property
    def capped(self) -> bool:
        """True when a concurrency slot is taken (and must be released)."""
        return self.concurrency_value is not None


class Limiter(Protocol):
    """Decides whether a task may start now; holds concurrency slots until released."""

    async def admit(self, a: Admission) -> int:
        """0: start now; > 0: ms until the rate allows it; CAP_FULL: its key is at the cap. Admitting
        a task id that already holds its slot renews the slot and books nothing against the rate."""
        ...

    async def release(self, a: Admission) -> None:
        """Give ``a``'s concurrency slot back."""
        ...
