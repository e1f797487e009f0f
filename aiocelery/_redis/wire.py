"""The hot path's own command packing and pipelining, beneath redis-py's per-argument overhead.

``pack`` builds RESP for EVALSHA calls from str/bytes/int arguments in one pass; ``execute``
sends any number of packed commands on one pooled connection and reads every reply, with error
replies returned in place (not raised), and retries once on a dropped connection (the scripts
are idempotent). Everything else keeps using redis-py.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Arg = str | bytes | int | float


def pack(args: Sequence[Arg]) -> bytes:
    """One command in RESP."""
    parts = [b"*%d\r\n" % len(args)]
    append = parts.append
    for arg in args:
        data: bytes = arg if isinstance(arg, bytes) else arg.encode() if isinstance(arg, str) else str(arg).encode()
        append(b"$%d\r\n" % len(data))
        append(data)
        append(b"\r\n")
    return b"".join(parts)


def evalsha(sha: str, keys: Sequence[Arg], args: Sequence[Arg]) -> bytes:
    """A packed ``EVALSHA sha numkeys keys... args...``."""
    return pack(["EVALSHA", sha, len(keys), *keys, *args])


async def execute(pool: ConnectionPool, commands: list[bytes], attempts: int = 2) -> list[Any]:
    """Send ``commands`` in one write and read their replies; errors come back as exceptions."""
    for attempt in range(attempts):
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await conn.send_packed_command(commands, check_health=False)
            return await _read_replies(conn, len(commands))
        except (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError):
            await conn.disconnect()
            if attempt + 1 == attempts:
                raise
            await asyncio.sleep(0.05)
        except BaseException:
            await conn.disconnect()  # a half-read reply would corrupt the next user of it
            raise
        finally:
            await pool.release(conn)
    raise AssertionError("unreachable")


async def _read_replies(conn: AbstractConnection, n: int) -> list[Any]:
    """``n`` replies under one socket timeout for the whole batch (not one timer per reply)."""
    replies: list[Any] = []
    try:
        async with asyncio.timeout(conn.socket_timeout):
            for _ in range(n):
                try:
                    replies.append(await conn.read_response(timeout=math.inf))
                except ResponseError as exc:
                    replies.append(exc)
    except TimeoutError:
        raise RedisTimeoutError(f"no reply from Redis within {conn.socket_timeout} s "
                                f"({len(replies)} of {n} replies read)") from None
    return replies
