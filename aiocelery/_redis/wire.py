"""The hot path's own command packing and pipelining, beneath redis-py's per-argument overhead.

``pack`` builds RESP for EVALSHA calls from str/bytes/int arguments (hiredis, in C); ``execute``
sends any number of packed commands on one pooled connection and reads every reply, with error
replies returned in place (not raised), and retries once on a dropped or silent connection (the
scripts are idempotent). Everything else keeps using redis-py.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

import hiredis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Arg = str | bytes | int | float


def pack(args: Sequence[Arg]) -> bytes:
    """One command in RESP, packed in C by hiredis (``redis[hiredis]`` is a dependency)."""
    packed: bytes = hiredis.pack_command(tuple(args))  # type: ignore[arg-type]  # its stub says a 1-tuple
    return packed


def evalsha(sha: str, keys: Sequence[Arg], args: Sequence[Arg]) -> bytes:
    """A packed ``EVALSHA sha numkeys keys... args...``."""
    return pack(["EVALSHA", sha, len(keys), *keys, *args])


async def execute(pool: ConnectionPool, commands: list[bytes], attempts: int = 2,
                  timeout_s: float | None = None) -> list[Any]:
    """Send ``commands`` in one write and read their replies; errors come back as exceptions.

    Each attempt (waiting for a pooled connection, the write, every reply) must end within the
    socket timeout, and with ``timeout_s``, all attempts within that; one timer per attempt. A
    dropped connection or a silent one is retried once (the scripts are idempotent).
    """
    loop = asyncio.get_running_loop()
    socket_timeout: float | None = pool.connection_kwargs.get("socket_timeout")
    deadline = None if timeout_s is None else loop.time() + timeout_s
    for attempt in range(attempts):
        limit = _limit(socket_timeout, None if deadline is None else deadline - loop.time())
        conn: AbstractConnection | None = None
        try:
            async with asyncio.timeout(limit):
                conn = await pool.get_connection()  # type: ignore[no-untyped-call]
                await conn.send_packed_command(commands, check_health=False)
                return [await _reply(conn) for _ in commands]
        except (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError, TimeoutError) as exc:
            if conn is not None:
                await conn.disconnect()
            if deadline is not None and loop.time() >= deadline:
                raise TimeoutError(f"no reply from Redis within {timeout_s} s") from None
            if attempt + 1 == attempts:
                if isinstance(exc, TimeoutError):
                    raise RedisTimeoutError(f"no reply from Redis within {limit} s") from None
                raise
            await asyncio.sleep(0.05)
        except BaseException:
            if conn is not None:
                await conn.disconnect()  # a half-read reply would corrupt the next user of it
            raise
        finally:
            if conn is not None:
                await pool.release(conn)
    raise AssertionError("unreachable")


def _limit(socket_timeout: float | None, remaining: float | None) -> float | None:
    """The time one attempt gets: the socket timeout, capped by what is left of the call's."""
    if remaining is None:
        return socket_timeout
    return max(0.0, remaining if socket_timeout is None else min(socket_timeout, remaining))


async def _reply(conn: AbstractConnection) -> Any:
    """The next reply, an error reply returned as its exception; no timer of its own."""
    try:
        return await conn.read_response(timeout=math.inf)
    except ResponseError as exc:
        return exc
