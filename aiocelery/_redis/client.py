"""Redis clients configured against redis-py's defaults that bite (RELIABILITY.md section 5)."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

Client = aioredis.Redis


class Connection(aioredis.Connection):
    """redis-py's connection, with uvloop's error for a write on a closed transport (a
    RuntimeError, MagicStack/uvloop#506) turned into the ConnectionError redis-py retries on."""

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        try:
            await super().send_packed_command(command, check_health)
        except RuntimeError as exc:
            if "closed" not in str(exc):
                raise
            await self.disconnect(nowait=True)
            raise aioredis.ConnectionError(f"connection closed while writing: {exc}") from exc


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
        connection_class=Connection,
    )
    return aioredis.Redis(connection_pool=pool)


def blocking_client(url: str, block_s: float) -> Client:
    """A one-connection client for blocking reads, whose socket outlives the block."""
    kwargs: dict[str, Any] = {
        "socket_timeout": block_s + 5.0,
        "socket_connect_timeout": 5.0,
        "single_connection_client": True,
        "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=1),
        "connection_class": Connection,
    }
    return aioredis.Redis.from_url(url, **kwargs)
