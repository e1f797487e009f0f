"""Typed, frozen configuration: ``Config(...)`` or ``Config.from_env()``.

Units are in the names (``result_ttl_s``). Values are checked when the Config is built, so a
typo fails at import time, not on the first task.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiocelery._redis.connection import Target
from aiocelery._redis.tls import VERIFY_MODES
from aiocelery.exceptions import ConfigError
from aiocelery.urls import AmqpTarget, TLSSettings, parse_url
from aiocelery.urls import redact_url as redact_url

EXCHANGE_TYPES = ("direct", "topic")
"""Exchange types aiocelery routes through: each task goes to the one queue it names."""
QUEUE_TYPES = ("quorum", "classic")


@dataclass(frozen=True, slots=True)
class AMQPConfig:
    """Machinery's AMQP block, used by the RabbitMQ broker (``amqp://``); Redis brokers do not use it.

    Each queue is declared durable and bound to ``exchange`` under its own name, and the default
    queue also under ``binding_key``; tasks are published, persistent, with their queue's name as
    routing key."""

    exchange: str = "aiocelery_exchange"
    """The durable exchange tasks are published to (Machinery's Exchange)."""
    exchange_type: str = "direct"
    """``direct`` (Machinery's default) or ``topic``: a task goes to the queue it names."""
    binding_key: str = "aiocelery_task"
    """An extra binding of the default queue (Machinery's BindingKey)."""
    prefetch_count: int = 0
    """Unacknowledged messages a worker holds per queue; 0 (default): the worker's concurrency,
    so a worker never holds more messages than it has free slots for."""
    queue_type: str = "quorum"
    """``quorum`` (replicated over a RabbitMQ cluster; the default) or ``classic``."""

    def __post_init__(self) -> None:
        if self.exchange_type not in EXCHANGE_TYPES:
            raise ConfigError(f"amqp.exchange_type {self.exchange_type!r} is not supported: aiocelery sends each task "
                              f"to the one queue it names, which a {self.exchange_type} exchange does not do; use "
                              f"{' or '.join(EXCHANGE_TYPES)}")
        if self.queue_type not in QUEUE_TYPES:
            raise ConfigError(f"amqp.queue_type must be {' or '.join(QUEUE_TYPES)}, got {self.queue_type!r}")
        if not self.exchange or not self.binding_key:
            raise ConfigError("amqp.exchange and amqp.binding_key must not be empty (RabbitMQ's default exchange "
                              "cannot be declared)")
        if self.prefetch_count < 0:
            raise ConfigError(f"amqp.prefetch_count must be >= 0 (0: the worker's concurrency), "
                              f"got {self.prefetch_count}")


@dataclass(frozen=True, slots=True, repr=False)
class Config:
    """Everything an App needs to know; every field has a sensible default."""

    broker: str = "redis://127.0.0.1:6379/0"
    """Broker URL: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` (TLS),
    ``unix:///path/to/redis.sock?db=N``, ``amqp://user:password@host:5672/vhost`` (RabbitMQ; TLS:
    ``amqps://``) or ``memory://`` (see ``aiocelery.urls``)."""
    result_backend: str | None = None
    """Result backend URL; ``None`` means the broker's. With a Redis broker it must be the broker's
    Redis, because a result is stored in the same atomic step that acknowledges the delivery. With
    RabbitMQ it is required, a Redis URL: task records, results, delayed tasks and limits live there."""
    default_queue: str = "aiocelery"
    """Queue for tasks that name none (Machinery's DefaultQueue)."""
    result_ttl_s: float = 86_400.0
    """How long a finished task's result is kept (Machinery's ResultsExpireIn); default one day."""
    key_prefix: str = "aiocelery"
    """Prefix of every Redis key and channel; different apps on one Redis use different prefixes."""
    send_timeout_s: float = 10.0
    """How long ``delay()``/``send_task()`` may take before raising SendError."""
    max_payload_bytes: int = 4 * 1024 * 1024
    """Largest encoded task (args + kwargs) accepted at send time."""
    shutdown_grace_s: float = 30.0
    """On SIGTERM, how long in-flight tasks may finish before they are handed back to the queue."""
    fetch_block_s: float = 2.0
    """Longest single blocking read of the fetcher (it is re-issued; this only bounds one call)."""
    lease_s: float = 30.0
    """A running delivery's lease, renewed every third of it; a dead worker's tasks restart after it."""
    reclaim_interval_s: float = 5.0
    """How often a worker looks for deliveries whose lease expired (XAUTOCLAIM)."""
    blocked_loop_warn_s: float = 1.0
    """The watchdog warns, naming the task, when the event loop is blocked this long."""
    max_crashes: int = 3
    """Deliveries that started and never finished before a task is dead-lettered as poison."""
    max_connections: int = 64
    """Size of the blocking Redis connection pool per process (callers wait, never fail)."""
    ssl_ca_certs: str | None = None
    """rediss://: PEM file of the CA that signed Redis's certificate (None: the system's trust
    store). Also settable as the URL's ``?ssl_ca_certs=``; a different value in both is an error."""
    ssl_certfile: str | None = None
    """rediss://: PEM client certificate, for a Redis that checks clients (``tls-auth-clients``)."""
    ssl_keyfile: str | None = None
    """rediss://: the client certificate's unencrypted PEM key (may be left out when the
    certificate file holds it)."""
    ssl_cert_reqs: str = "required"
    """rediss://: ``required`` checks Redis's certificate and host name, ``optional`` its
    certificate only, ``none`` nothing (encrypted, not authenticated). The default counts as not
    given, so a URL's ``?ssl_cert_reqs=`` overrides it."""
    socket_timeout_s: float = 10.0
    """Longest wait for a Redis reply before the connection is dropped and the call retried. A
    blocking read waits its block time plus this; lease renewal, on its own thread, waits at most
    2 s so that a stalled pass ends before the next."""
    connect_timeout_s: float = 5.0
    """Longest time to connect to Redis, TLS handshake and AUTH included."""
    min_replica_acks: int = 0
    """Durable sends: ``delay()`` returns only once this many Redis replicas acknowledged the
    task (``WAIT``, within ``send_timeout_s``), so a task whose send returned survives a failover
    (Sentinel); fewer is a ``SendError``. 0 (default): the master's acknowledgement is enough."""
    amqp: AMQPConfig = field(default_factory=AMQPConfig)
    """Machinery's AMQP settings (exchange, type, binding key, prefetch, queue type), used with
    an ``amqp://`` broker; accepted and unused on Redis, so Machinery configurations load."""
    broker_target: Target | None = field(default=None, init=False, repr=False, compare=False)
    """Where the Redis client connects for the broker, parsed from ``broker`` once (None: memory://
    or RabbitMQ)."""
    backend_target: Target | None = field(default=None, init=False, repr=False, compare=False)
    """Where the result backend's client connects (the broker's Redis, or RabbitMQ's result
    backend; None: memory://)."""
    amqp_target: AmqpTarget | None = field(default=None, init=False, repr=False, compare=False)
    """Where RabbitMQ is, parsed from an ``amqp://`` broker URL (None: another broker)."""

    def __post_init__(self) -> None:
        broker, backend = self._targets()
        object.__setattr__(self, "broker_target", broker if isinstance(broker, Target) else None)
        object.__setattr__(self, "backend_target", backend)
        object.__setattr__(self, "amqp_target", broker if isinstance(broker, AmqpTarget) else None)
        if not self.default_queue or any(c in self.default_queue for c in "{}: "):
            raise ConfigError(f"default_queue {self.default_queue!r} must be non-empty without '{{}}: '")
        for name in ("result_ttl_s", "send_timeout_s", "shutdown_grace_s", "fetch_block_s", "lease_s",
                     "reclaim_interval_s", "blocked_loop_warn_s", "socket_timeout_s", "connect_timeout_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.min_replica_acks < 0:
            raise ConfigError(f"min_replica_acks must be >= 0, got {self.min_replica_acks!r}")
        for name in ("max_payload_bytes", "max_crashes", "max_connections"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not self.key_prefix or "{" in self.key_prefix or "}" in self.key_prefix:
            raise ConfigError(f"key_prefix {self.key_prefix!r} must be non-empty without braces")

    def _targets(self) -> tuple[Target | AmqpTarget | None, Target | None]:
        """Parse the broker and result backend URLs (once, here); the backend must be the broker's
        (with RabbitMQ: a Redis)."""
        if self.ssl_cert_reqs not in VERIFY_MODES:
            raise ConfigError(f"ssl_cert_reqs must be one of {', '.join(VERIFY_MODES)}, got {self.ssl_cert_reqs!r}")
        tls = TLSSettings(self.ssl_ca_certs, self.ssl_certfile, self.ssl_keyfile, self.ssl_cert_reqs)
        broker = parse_url("broker", self.broker, tls)
        if isinstance(broker, AmqpTarget):
            return broker, self._amqp_backend(tls)
        if self.result_backend is None:
            return broker, broker
        backend = parse_url("result_backend", self.result_backend, tls)
        if isinstance(backend, AmqpTarget):
            raise ConfigError(f"result_backend {redact_url(self.result_backend)!r} is an AMQP URL; RabbitMQ is a "
                              "broker only: give a Redis URL as result_backend")
        if (broker is None) != (backend is None):
            raise ConfigError(
                "broker and result_backend must both be memory:// or both be Redis "
                f"(got {redact_url(self.broker)!r} and {redact_url(self.result_backend)!r})"
            )
        if backend != broker:
            raise ConfigError(
                f"result_backend {redact_url(self.result_backend)!r} must be the broker's Redis "
                f"({redact_url(self.broker)!r}) or None: results are stored in the same atomic "
                "script that acknowledges the delivery"
            )
        return broker, backend

    def _amqp_backend(self, tls: TLSSettings) -> Target:
        """With RabbitMQ as the broker, the result backend must be a Redis: records, results, the
        delayed set and limits live there."""
        if self.result_backend is None:
            raise ConfigError(f"broker {redact_url(self.broker)!r} is RabbitMQ, which holds the queues only: set "
                              "result_backend to a Redis URL (task records, results, delayed tasks and limits "
                              "live there), as in result_backend='redis://127.0.0.1:6379/0'")
        backend = parse_url("result_backend", self.result_backend, tls)
        if not isinstance(backend, Target):
            raise ConfigError(f"result_backend {redact_url(self.result_backend)!r} cannot go with a RabbitMQ broker: "
                              "give a Redis URL (redis://, rediss:// or unix://)")
        return backend

    def __repr__(self) -> str:
        fields = []
        for f in dataclasses.fields(self):
            if not f.repr:
                continue
            value = getattr(self, f.name)
            if f.name in ("broker", "result_backend") and isinstance(value, str):
                value = redact_url(value)
            fields.append(f"{f.name}={value!r}")
        return f"Config({', '.join(fields)})"

    @property
    def backend_url(self) -> str:
        """The effective result backend URL."""
        return self.result_backend or self.broker

    @property
    def is_memory(self) -> bool:
        """True when this config runs in-process on ``memory://``."""
        return self.backend_target is None

    @property
    def is_amqp(self) -> bool:
        """True when the broker is RabbitMQ (``amqp://`` or ``amqps://``)."""
        return self.amqp_target is not None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, prefix: str = "AIOCELERY_") -> Config:
        """Build a Config from ``AIOCELERY_BROKER``, ``AIOCELERY_RESULT_TTL_S``, ... variables."""
        source = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = source.get(prefix + f.name.upper())
            if raw is None or f.name == "amqp" or not f.init:
                continue
            values[f.name] = _parse(f.name, raw, str(f.type))
        return cls(**values)

    def replace(self, **changes: Any) -> Config:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def _parse(name: str, raw: str, type_name: str) -> Any:
    try:
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            return float(raw)
    except ValueError:
        raise ConfigError(f"environment value for {name} must be a {type_name}, got {raw!r}") from None
    return raw or None if "None" in type_name else raw
