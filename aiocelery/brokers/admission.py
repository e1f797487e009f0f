"""Cluster-wide start admission: rate limits and per-key concurrency caps (Redis and memory)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from aiocelery._redis.client import Client
from aiocelery.brokers.redis.scripts import load_script
from aiocelery.timing.rate import Rate

CAP_FULL = -1
"""``admit`` answer when the concurrency cap is full."""


@dataclass(frozen=True, slots=True)
class Admission:
    """What to check before a start: ``rate`` under ``rate_key``, ``limit`` runs under ``slot_key``."""

    task_id: str
    rate_key: str | None = None
    rate: Rate | None = None
    slot_key: str | None = None
    limit: int = 0
    slot_ttl_ms: int = 0


class Limiter(Protocol):
    """Decides whether a task may start now; holds concurrency slots until released."""

    async def admit(self, a: Admission) -> int:
        """0: start now; > 0: ms until the rate allows it; CAP_FULL: its key is at the cap."""
        ...

    async def release(self, slot_key: str, task_id: str) -> None:
        """Give a concurrency slot back."""
        ...


class RedisLimiter:
    """admit.lua on the broker's Redis."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._script = load_script("admit")

    async def admit(self, a: Admission) -> int:
        """One script call checks the rate and the cap together."""
        rk = a.rate_key
        keys = [rk or "-", a.slot_key or "-", f"{rk}:reserved" if rk else "-", f"{rk}:started" if rk else "-"]
        rate = a.rate
        args = ["" if rate is None else rate.interval_ms, 1 if rate is None else rate.burst,
                "" if a.slot_key is None else a.limit, a.slot_ttl_ms, a.task_id]
        return int(await self._client.run_script(self._script, keys, args))

    async def release(self, slot_key: str, task_id: str) -> None:
        """ZREM the task from the slot set."""
        await self._client.call("ZREM", slot_key, task_id)


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
        held = {k: v for k, v in self.slots.get(a.slot_key or "", {}).items() if v > now}
        if a.slot_key is not None and a.task_id not in held and len(held) >= a.limit:
            return CAP_FULL
        if a.rate is not None and a.rate_key is not None:
            wait = self._rate(a.rate_key, a.rate, a.task_id, now)
            if wait:
                return wait
        if a.slot_key is not None:
            held[a.task_id] = now + a.slot_ttl_ms
            self.slots[a.slot_key] = held
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

    async def release(self, slot_key: str, task_id: str) -> None:
        """Forget the slot."""
        self.slots.get(slot_key, {}).pop(task_id, None)
