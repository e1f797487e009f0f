"""Rate limits and concurrency caps for memory://: admit.lua's arithmetic in process memory."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from aiocelery.brokers.admission import CAP_FULL, Admission
from aiocelery.timing.rate import Rate


@dataclass(slots=True)
class MemoryLimiter:
    """The same arithmetic in process memory."""

    clock: Callable[[], int]
    tats: dict[str, float] = field(default_factory=dict)
    reserved: dict[str, float] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)
    slots: dict[str, dict[str, float]] = field(default_factory=dict)

    async def admit(self, a: Admission) -> int:
        """Mirror of admit.lua."""
        now = float(self.clock())
        slot_key = _slot_key(a)
        held = {k: v for k, v in self.slots.get(slot_key or "", {}).items() if v > now}
        if slot_key is not None and a.task_id not in held and len(held) >= a.limit:
            return CAP_FULL
        if a.rate is not None:
            wait = self._rate(a.task_name, a.rate, a.task_id, now)
            if wait:
                return wait
        if slot_key is not None:
            held[a.task_id] = now + a.slot_ttl_ms
            self.slots[slot_key] = held
        return 0

    def _rate(self, key: str, rate: Rate, task_id: str, now: float) -> int:
        reserved = self.reserved.get(task_id)
        if reserved is None:
            tat = max(self.tats.get(key, 0.0), now)
            reserved = tat - (rate.burst - 1) * rate.interval_ms
            self.tats[key] = tat + rate.interval_ms
            self.reserved[task_id] = reserved
        if now < reserved:
            return max(1, math.ceil(reserved - now))
        started = max(self.started.get(key, 0.0), now)
        start_at = started - (rate.burst - 1) * rate.interval_ms
        if now < start_at:
            return max(1, math.ceil(start_at - now))
        self.started[key] = started + rate.interval_ms
        del self.reserved[task_id]
        return 0

    async def release(self, a: Admission) -> None:
        """Forget the slot."""
        self.slots.get(_slot_key(a) or "", {}).pop(a.task_id, None)


def _slot_key(a: Admission) -> str | None:
    return None if a.concurrency_value is None else f"{a.task_name}:{a.concurrency_value}"
