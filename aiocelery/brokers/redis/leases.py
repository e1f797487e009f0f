"""Lease renewal on its own synchronous connection, callable from a watchdog thread.

Because it never touches the event loop, a task that blocks the loop cannot stop the renewal of
its own (or anyone else's) leases.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from aiocelery._redis.connection import Target
from aiocelery._redis.sync import SyncClient
from aiocelery.brokers.redis.keys import GROUP, Keys
from aiocelery.brokers.redis.scripts import load_script
from aiocelery.wire.records import Delivery


class RedisLeaseKeeper:
    """Renews a consumer's leases with renew.lua; reports the ones that were lost."""

    def __init__(self, target: Target, keys: Keys, consumer: str) -> None:
        # no client-side retries, and a short timeout that is not a setting: a stalled pass must end
        # quickly, the next pass comes lease/3 later
        self._client = SyncClient(target, timeout=2.0)
        self._renew = load_script("renew")
        self._keys = keys
        self._consumer = consumer

    def renew(self, held: Sequence[Delivery]) -> list[str]:
        """Reset the lease of every delivery in ``held``; returns entry ids whose lease is lost."""
        by_queue: dict[str, list[Delivery]] = defaultdict(list)
        for d in held:
            by_queue[d.queue].append(d)
        lost: list[str] = []
        for queue, deliveries in by_queue.items():
            args: list[str | int] = [GROUP, self._consumer]
            for d in deliveries:
                args += [d.entry_id, d.attempt]
            keys = [self._keys.stream(queue), *(self._keys.task(d.task_id) for d in deliveries)]
            reply = self._client.run_script(self._renew, keys, args)
            lost += [e.decode() if isinstance(e, bytes) else str(e) for e in reply]
        return lost

    def close(self) -> None:
        """Close the connection."""
        self._client.close()
