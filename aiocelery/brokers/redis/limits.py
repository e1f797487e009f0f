"""Rate limits and concurrency caps on Redis: admit.lua, one script call checks both."""

from __future__ import annotations

from aiocelery._redis.client import Client
from aiocelery.brokers.admission import Admission
from aiocelery.brokers.redis.keys import Keys
from aiocelery.brokers.redis.scripts import load_script


class RedisLimiter:
    """admit.lua on the broker's Redis; keys from ``Keys.rate`` and ``Keys.slots``."""

    def __init__(self, client: Client, keys: Keys) -> None:
        self._client = client
        self._keys = keys
        self._script = load_script("admit")

    async def admit(self, a: Admission) -> int:
        """One script call checks the rate and the cap together."""
        rk = self._keys.rate(a.task_name) if a.rate is not None else None
        slot_key = self._slot_key(a)
        keys = [rk or "-", slot_key or "-", f"{rk}:reserved" if rk else "-", f"{rk}:started" if rk else "-"]
        rate = a.rate
        args = ["" if rate is None else rate.interval_ms, 1 if rate is None else rate.burst,
                "" if slot_key is None else a.limit, a.slot_ttl_ms, a.task_id]
        return int(await self._client.run_script(self._script, keys, args))

    async def release(self, a: Admission) -> None:
        """ZREM the task from the slot set."""
        slot_key = self._slot_key(a)
        if slot_key is not None:
            await self._client.call("ZREM", slot_key, a.task_id)

    def _slot_key(self, a: Admission) -> str | None:
        return None if a.concurrency_value is None else self._keys.slots(a.task_name, a.concurrency_value)
