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
from aiocelery.urls import TLSSettings, parse_url
from aiocelery.urls import redact_url as redact_url


@dataclass(frozen=True, slots=True)
class AMQPConfig:
    """Machinery's AMQP block; kept for config compatibility (the Redis broker does not use it)."""

    exchange: str = "aiocelery_exchange"
    exchange_type: str = "direct"
    binding_key: str = "aiocelery_task"
    prefetch_count: int = 1


@dataclass(frozen=True, slots=True, repr=False)
class Config:
    """Everything an App needs to know; every field has a sensible default."""

    broker: str = "redis://127.0.0.1:6379/0"
    """Broker URL: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` (TLS),
    ``unix:///path/to/redis.sock?db=N`` or ``memory://`` (see ``aiocelery.urls``)."""
    result_backend: str | None = None
    """Result backend URL; ``None`` means the broker's. With Redis it must be the broker's Redis,
    because a result is stored in the same atomic step that acknowledges the delivery."""
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
    amqp: AMQPConfig = field(default_factory=AMQPConfig)
    """Machinery's AMQP settings (exchange, type, binding key, prefetch); informational on Redis."""
    broker_target: Target | None = field(default=None, init=False, repr=False, compare=False)
    """Where the Redis client connects for the broker, parsed from ``broker`` once (None: memory://)."""
    backend_target: Target | None = field(default=None, init=False, repr=False, compare=False)
    """Where the result backend's client connects (the broker's Redis; None: memory://)."""

    def __post_init__(self) -> None:
        broker, backend = self._targets()
        object.__setattr__(self, "broker_target", broker)
        object.__setattr__(self, "backend_target", backend)
        if not self.default_queue or any(c in self.default_queue for c in "{}: "):
            raise ConfigError(f"default_queue {self.default_queue!r} must be non-empty without '{{}}: '")
        for name in ("result_ttl_s", "send_timeout_s", "shutdown_grace_s", "fetch_block_s", "lease_s",
                     "reclaim_interval_s", "blocked_loop_warn_s", "socket_timeout_s", "connect_timeout_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("max_payload_bytes", "max_crashes", "max_connections"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not self.key_prefix or "{" in self.key_prefix or "}" in self.key_prefix:
            raise ConfigError(f"key_prefix {self.key_prefix!r} must be non-empty without braces")

    def _targets(self) -> tuple[Target | None, Target | None]:
        """Parse the broker and result backend URLs (once, here); the backend must be the broker's."""
        if self.ssl_cert_reqs not in VERIFY_MODES:
            raise ConfigError(f"ssl_cert_reqs must be one of {', '.join(VERIFY_MODES)}, got {self.ssl_cert_reqs!r}")
        tls = TLSSettings(self.ssl_ca_certs, self.ssl_certfile, self.ssl_keyfile, self.ssl_cert_reqs)
        broker = parse_url("broker", self.broker, tls)
        if self.result_backend is None:
            return broker, broker
        backend = parse_url("result_backend", self.result_backend, tls)
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
        return self.broker_target is None

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
