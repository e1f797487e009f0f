"""Redis clients configured against redis-py's defaults that bite (RELIABILITY.md section 5)."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

Client = aioredis.Redis


def _retry() -> Retry:
    # Safe only because every write is an idempotent script keyed by the task id.
    return Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=3)


def command_client(url: str, max_connections: int, socket_timeout: float = 10.0) -> Client:
    """A client whose pool makes callers wait for a free connection instead of raising."""
    pool: aioredis.BlockingConnectionPool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=None,
        socket_timeout=socket_timeout,
        socket_connect_timeout=5.0,
        retry=_retry(),
        retry_on_error=[ConnectionError],
    )
    return aioredis.Redis(connection_pool=pool)


def blocking_client(url: str, block_s: float) -> Client:
    """A one-connection client for blocking reads, whose socket outlives the block."""
    kwargs: dict[str, Any] = {
        "socket_timeout": block_s + 5.0,
        "socket_connect_timeout": 5.0,
        "single_connection_client": True,
        "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=1),
    }
    return aioredis.Redis.from_url(url, **kwargs)
