"""Lease renewal for RabbitMQ deliveries, in Redis, on its own synchronous connection.

RabbitMQ keeps a worker's messages while its connection lives and redelivers them when it drops;
the lease in the task record tells whichever worker gets such a message that the task still runs
(begin.lua: "held"), and tells this worker when its attempt was taken over (lost).
"""

from __future__ import annotations

from collections.abc import Sequence

from aiocelery._redis.connection import Target
from aiocelery._redis.sync import SyncClient
from aiocelery.brokers.amqp.scripts import AMQP_LUA
from aiocelery.brokers.redis.keys import Keys
from aiocelery.brokers.redis.scripts import load_script
from aiocelery.wire.records import Delivery


class AmqpLeaseKeeper:
    """Renews the leases of a worker's running attempts with renew.lua (RabbitMQ)."""

    def __init__(self, target: Target, keys: Keys, lease_ms: int) -> None:
        self._client = SyncClient(target, timeout=2.0)  # as the Redis broker's: a stalled pass ends quickly
        self._renew = load_script("renew", AMQP_LUA)
        self._keys = keys
        self._lease_ms = lease_ms

    def renew(self, held: Sequence[Delivery]) -> list[str]:
        """Extend each held attempt's lease; the entry ids (delivery tokens) whose lease is lost."""
        if not held:
            return []
        reply = self._client.run_script(self._renew, [self._keys.task(d.task_id) for d in held],
                                        [self._lease_ms, *(d.attempt for d in held)])
        return [held[int(i) - 1].entry_id for i in reply]

    def close(self) -> None:
        """Close the connection."""
        self._client.close()
