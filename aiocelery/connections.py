"""Build the broker and backend a Config names, sharing what they can share."""

from __future__ import annotations

from dataclasses import dataclass

from aiocelery._redis.client import Client, command_client
from aiocelery._redis.pubsub import PubSubHub
from aiocelery.backends.base import ResultBackend
from aiocelery.backends.memory import MemoryBackend
from aiocelery.backends.redis import RedisBackend
from aiocelery.brokers.admission import Limiter, MemoryLimiter, RedisLimiter
from aiocelery.brokers.base import Broker
from aiocelery.brokers.memory.broker import MemoryBroker, MemoryStore
from aiocelery.brokers.operations import Admin, MemoryAdmin, RedisAdmin
from aiocelery.brokers.redis.broker import RedisBroker
from aiocelery.brokers.redis.keys import Keys
from aiocelery.config import Config
from aiocelery.exceptions import ConfigError
from aiocelery.timing.clock import Clock, SystemClock


@dataclass(slots=True)
class Connections:
    """An app's broker and backend plus the Redis client and pub/sub hub behind them."""

    broker: Broker
    backend: ResultBackend
    limiter: Limiter
    keys: Keys
    clock: Clock
    admin: Admin
    client: Client | None = None
    hub: PubSubHub | None = None

    async def close(self) -> None:
        """Close everything, in dependency order."""
        await self.broker.close()
        await self.backend.close()
        if self.hub is not None:
            await self.hub.close()
        if self.client is not None:
            await self.client.aclose()


def connect(config: Config, clock: Clock | None = None) -> Connections:
    """Create (lazily connecting) clients for ``config``; ``clock`` only for memory://."""
    target = config.broker_target
    if target is None:  # memory://
        store = MemoryStore(clock=clock or SystemClock())
        broker = MemoryBroker(store, result_ttl_s=config.result_ttl_s, max_crashes=config.max_crashes)
        limiter = MemoryLimiter(store.clock.now_ms)
        return Connections(broker, MemoryBackend(store), limiter, Keys(config.key_prefix), store.clock,
                           MemoryAdmin(store))
    if clock is not None:
        raise ConfigError("a custom clock (VirtualClock) works with memory:// only; Redis keeps its own time")
    client = command_client(target, config.max_connections, socket_timeout=config.socket_timeout_s,
                            connect_timeout=config.connect_timeout_s)
    hub = PubSubHub(target, connect_timeout=config.connect_timeout_s)
    keys = Keys(config.key_prefix)
    redis_broker = RedisBroker(target, client, hub, keys, result_ttl_s=config.result_ttl_s,
                               max_crashes=config.max_crashes, send_timeout_s=config.send_timeout_s,
                               socket_timeout_s=config.socket_timeout_s, connect_timeout_s=config.connect_timeout_s)
    backend = RedisBackend(client, hub, keys)
    admin = RedisAdmin(client, hub, keys, int(config.result_ttl_s * 1000))
    return Connections(redis_broker, backend, RedisLimiter(client), keys, SystemClock(), admin, client, hub)
