"""Build what a Config names: the broker, the result backend, operations, the limiter and the clock.

``connect`` picks the implementation by the URL's scheme, so adding a broker is one entry in
``_BUILDERS`` (see ``docs/adding-a-broker.md``). Connections are opened lazily, on first use.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiocelery._redis.client import command_client
from aiocelery._redis.errors import RedisError
from aiocelery._redis.pubsub import PubSubHub
from aiocelery.backends.base import ResultBackend
from aiocelery.backends.memory import MemoryBackend
from aiocelery.backends.redis import RedisBackend
from aiocelery.brokers.admission import Limiter
from aiocelery.brokers.base import TRANSIENT_ERRORS, Broker
from aiocelery.brokers.memory.broker import MemoryBroker
from aiocelery.brokers.memory.limits import MemoryLimiter
from aiocelery.brokers.memory.operations import MemoryOperations
from aiocelery.brokers.memory.store import MemoryStore
from aiocelery.brokers.operations import Operations
from aiocelery.brokers.redis.broker import RedisBroker
from aiocelery.brokers.redis.keys import Keys
from aiocelery.brokers.redis.limits import RedisLimiter
from aiocelery.brokers.redis.operations import RedisOperations
from aiocelery.config import Config
from aiocelery.exceptions import ConfigError
from aiocelery.timing.clock import Clock, SystemClock


@dataclass(slots=True)
class Connections:
    """Everything an app talks to, built from its Config: what ``app.connections`` returns.

    The worker takes the broker, backend, limiter, operations and clock from here; the CLI and
    contrib take ``operations``; ``close`` releases whatever the parts share (a Redis client and
    its pub/sub connection)."""

    broker: Broker
    """Where tasks are sent and fetched."""
    backend: ResultBackend
    """Where results are read and awaited."""
    operations: Operations
    """Queue numbers, purge, dead letters, the worker registry and control channel."""
    limiter: Limiter
    """Rate limits and concurrency caps."""
    clock: Clock
    """The clock schedules read (the broker's own time on Redis: ``broker.now_ms``)."""
    errors: tuple[type[BaseException], ...] = TRANSIENT_ERRORS
    """What the parts may raise besides aiocelery's own errors (connection loss, timeouts, the
    client's error replies): public calls wrap these in ``BrokerError``/``SendError``."""
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    """What the parts share, closed after them."""

    async def close(self) -> None:
        """Close everything, in dependency order."""
        await self.broker.close()
        await self.backend.close()
        for close in self.closers:
            await close()


def connect(config: Config, clock: Clock | None = None) -> Connections:
    """Create (lazily connecting) clients for ``config``; ``clock`` only for memory://."""
    scheme = config.broker.partition("://")[0].lower()
    builder = _BUILDERS.get(scheme)
    if builder is None:  # Config checks URLs when it is built; this guards a new scheme without a builder
        raise ConfigError(f"no broker is built for {scheme}:// URLs")
    return builder(config, clock)


def _memory(config: Config, clock: Clock | None) -> Connections:
    if config.min_replica_acks:
        raise ConfigError("min_replica_acks needs Redis replicas; memory:// has none: leave it at 0")
    store = MemoryStore(clock=clock or SystemClock())
    broker = MemoryBroker(store, result_ttl_s=config.result_ttl_s, max_crashes=config.max_crashes)
    return Connections(broker, MemoryBackend(store), MemoryOperations(store), MemoryLimiter(store.clock.now_ms),
                       store.clock)


def _redis(config: Config, clock: Clock | None) -> Connections:
    if clock is not None:
        raise ConfigError("a custom clock (VirtualClock) works with memory:// only; Redis keeps its own time")
    target = config.broker_target
    assert target is not None  # every Redis scheme parses to a target
    client = command_client(target, config.max_connections, socket_timeout=config.socket_timeout_s,
                            connect_timeout=config.connect_timeout_s)
    hub = PubSubHub(target, connect_timeout=config.connect_timeout_s)
    keys = Keys(config.key_prefix)
    broker = RedisBroker(target, client, hub, keys, result_ttl_s=config.result_ttl_s,
                         max_crashes=config.max_crashes, send_timeout_s=config.send_timeout_s,
                         socket_timeout_s=config.socket_timeout_s, connect_timeout_s=config.connect_timeout_s,
                         min_replica_acks=config.min_replica_acks)
    operations = RedisOperations(client, hub, keys, int(config.result_ttl_s * 1000))
    return Connections(broker, RedisBackend(client, hub, keys), operations, RedisLimiter(client, keys),
                       SystemClock(), (*TRANSIENT_ERRORS, RedisError), [hub.close, client.aclose])


def _amqp(config: Config, clock: Clock | None) -> Connections:
    """RabbitMQ for the queues, the Redis result backend for everything else (docs/delivery.md)."""
    if clock is not None:
        raise ConfigError("a custom clock (VirtualClock) works with memory:// only; the RabbitMQ broker keeps "
                          "time on its Redis")
    try:
        from aiocelery.brokers.amqp.broker import AmqpBroker
        from aiocelery.brokers.amqp.link import AMQP_ERRORS, AmqpLink
        from aiocelery.brokers.amqp.operations import AmqpOperations
    except ImportError as exc:  # aio-pika is the amqp extra
        raise ConfigError(f"broker {config.broker.partition('://')[0]}:// needs aio-pika ({exc}); install it with "
                          "pip install 'aiocelery[amqp]'") from exc
    target, amqp = config.backend_target, config.amqp_target
    assert target is not None and amqp is not None  # Config requires a Redis result backend with amqp://
    client = command_client(target, config.max_connections, socket_timeout=config.socket_timeout_s,
                            connect_timeout=config.connect_timeout_s)
    hub = PubSubHub(target, connect_timeout=config.connect_timeout_s)
    keys = Keys(config.key_prefix, streams=False)
    ttl_ms = int(config.result_ttl_s * 1000)
    store = RedisBroker(target, client, hub, keys, result_ttl_s=config.result_ttl_s, max_crashes=config.max_crashes,
                        send_timeout_s=config.send_timeout_s, socket_timeout_s=config.socket_timeout_s,
                        connect_timeout_s=config.connect_timeout_s, min_replica_acks=config.min_replica_acks)
    link = AmqpLink(amqp, config.amqp, config.default_queue, connect_timeout_s=config.connect_timeout_s)
    broker = AmqpBroker(store, link, client, hub, keys, target, result_ttl_s=config.result_ttl_s,
                        max_crashes=config.max_crashes, lease_s=config.lease_s, send_timeout_s=config.send_timeout_s)
    return Connections(broker, RedisBackend(client, hub, keys), AmqpOperations(client, hub, keys, ttl_ms, link),
                       RedisLimiter(client, keys), SystemClock(), (*TRANSIENT_ERRORS, RedisError, *AMQP_ERRORS),
                       [hub.close, client.aclose])


_BUILDERS: dict[str, Callable[[Config, Clock | None], Connections]] = {
    "memory": _memory, "redis": _redis, "rediss": _redis, "unix": _redis, "amqp": _amqp, "amqps": _amqp,
    "redis+sentinel": _redis, "rediss+sentinel": _redis,
}
"""Builders by URL scheme."""
