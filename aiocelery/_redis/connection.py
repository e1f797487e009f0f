"""One Redis connection as an asyncio protocol: commands pipelined, replies parsed by hiredis.

Any number of callers write on one connection without waiting for each other; replies come
back in order, so each write registers a waiter for its number of replies. Error replies are
returned in place (``ReplyError`` instances), never raised here. In push mode (pub/sub) every
reply goes to a callback instead.
"""

from __future__ import annotations

import asyncio
import collections
import math
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis

from aiocelery._redis.errors import ProtocolError, RedisConnectionError, RedisTimeoutError, ReplyError
from aiocelery._redis.wire import pack


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how to connect, from a ``redis://``, ``rediss://`` or ``unix://`` URL."""

    host: str = "localhost"
    port: int = 6379
    path: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def from_url(cls, url: str) -> Target:
        """Parse ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` or ``unix:///path?db=N``."""
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r} in {url!r}: "
                             "use redis://, rediss:// or unix://")
        query = parse_qs(parts.query)
        default_db = "0" if parts.scheme == "unix" else parts.path.lstrip("/")
        db_text = (query.get("db") or [default_db])[0]
        try:
            db = int(db_text or 0)
        except ValueError:
            raise ValueError(f"database {db_text!r} in {url!r} is not a number") from None
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        if parts.scheme == "unix":
            return cls(path=parts.path, db=db, username=username, password=password)
        return cls(host=parts.hostname or "localhost", port=parts.port or 6379, db=db, username=username,
                   password=password, tls=parts.scheme == "rediss")


@dataclass(slots=True)
class _Waiter:
    future: asyncio.Future[list[Any]]
    count: int
    replies: list[Any]
    deadline: float
    """Loop time by which the replies must be in, or the connection is dropped (``inf``: no limit)."""
    limit: float | None
    """The wait that deadline allows, for the error message."""


class Connection(asyncio.Protocol):
    """A connected protocol; use ``open_connection`` to make one."""

    def __init__(self) -> None:
        self._reader = hiredis.Reader(replyError=ReplyError)
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._transport: asyncio.Transport | None = None
        self._on_push: Callable[[Any], None] | None = None
        """Set after the connection setup, whose replies go to waiters: then every reply goes here."""
        self._lost: BaseException | None = None
        self._loop = asyncio.get_running_loop()
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self._timer: asyncio.TimerHandle | None = None
        """Fires at the earliest waiter's deadline or later; see ``_check_deadlines``."""
        self._timer_at = 0.0

    # protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's does not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        try:
            while (reply := reader.gets()) is not False:
                if self._on_push is not None:
                    self._on_push(reply)
                    continue
                waiter = self._waiters[0]
                waiter.replies.append(reply)
                if len(waiter.replies) == waiter.count:
                    self._waiters.popleft()
                    if not waiter.future.done():
                        waiter.future.set_result(waiter.replies)
        except hiredis.ProtocolError as exc:
            self.abort(ProtocolError(f"Redis sent an unreadable reply ({exc}); connection dropped"))
        except IndexError:
            self.abort(ProtocolError("Redis sent a reply nobody asked for; connection dropped"))

    def connection_lost(self, exc: Exception | None) -> None:
        error = self._lost or RedisConnectionError(
            f"connection to Redis lost{f' ({exc})' if exc else ''} with replies outstanding")
        self._lost = error
        self._transport = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.future.done():
                waiter.future.set_exception(error)
        if not self._closed.done():
            self._closed.set_result(None)

    # use

    async def wait_closed(self) -> None:
        """Return when the connection is lost or closed (a caller's cancellation leaves it be)."""
        await asyncio.shield(self._closed)

    @property
    def is_open(self) -> bool:
        """True until the connection is lost or closed."""
        return self._lost is None and self._transport is not None and not self._transport.is_closing()

    def send(self, data: bytes, count: int, limit: float | None = None) -> asyncio.Future[list[Any]]:
        """Write ``data`` (``count`` packed commands) and return the future of their replies.

        With ``limit``, replies that take longer than ``limit`` seconds drop the connection: the
        future fails with ``RedisTimeoutError`` (and any later waiter with the connection error).
        """
        transport = self._writable()
        future: asyncio.Future[list[Any]] = self._loop.create_future()
        deadline = math.inf
        if limit is not None:
            deadline = self._loop.time() + limit
            if self._timer is None or deadline < self._timer_at:
                self._arm(deadline)
        self._waiters.append(_Waiter(future, count, [], deadline, limit))
        transport.write(data)
        return future

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(when, self._check_deadlines)
        self._timer_at = when

    def _check_deadlines(self) -> None:
        """One timer per connection, not one per call (each costs ~2 µs to start and stop): it is
        armed for the earliest deadline when none is armed before it, and when it fires it drops
        the connection if a waiter is past its deadline, or re-arms for the earliest one left."""
        self._timer = None
        late = min(self._waiters, key=attrgetter("deadline"), default=None)
        if late is None or late.deadline == math.inf:
            return
        if late.deadline > self._loop.time():
            self._arm(late.deadline)
            return
        if not late.future.done():
            late.future.set_exception(RedisTimeoutError(f"no reply from Redis within {late.limit} s"))
        self.abort(RedisTimeoutError(f"a reply took over {late.limit} s; connection dropped"))

    def write(self, data: bytes) -> None:
        """Write without waiting for replies (push mode: replies go to the callback)."""
        self._writable().write(data)

    def _writable(self) -> asyncio.Transport:
        transport = self._transport
        if transport is None or self._lost is not None or transport.is_closing():
            raise self._lost or RedisConnectionError("connection to Redis is closed")
        return transport

    def abort(self, reason: BaseException | None = None) -> None:
        """Drop the connection now; outstanding callers get ``reason`` (a connection error)."""
        if self._lost is None:
            self._lost = reason or RedisConnectionError("connection to Redis closed")
        if self._transport is not None:
            self._transport.abort()
        else:
            self.connection_lost(None)


async def open_connection(target: Target, *, connect_timeout: float | None = 5.0,
                          on_push: Callable[[Any], None] | None = None) -> Connection:
    """Connect, authenticate and select the database; raises ``RedisConnectionError``."""
    loop = asyncio.get_running_loop()
    where = target.path or f"{target.host}:{target.port}"
    try:
        async with asyncio.timeout(connect_timeout):
            if target.path:
                _, conn = await loop.create_unix_connection(Connection, target.path)
            else:
                context = ssl.create_default_context() if target.tls else None
                _, conn = await loop.create_connection(Connection, target.host, target.port, ssl=context)
            setup = setup_commands(target)
            if setup:
                replies = await conn.send(b"".join(setup), len(setup))
                for reply in replies:
                    if isinstance(reply, ReplyError):
                        conn.abort()
                        raise RedisConnectionError(f"Redis at {where} refused the connection setup: {reply}")
    except TimeoutError:
        raise RedisConnectionError(f"could not connect to Redis at {where} within {connect_timeout} s") from None
    except OSError as exc:
        if isinstance(exc, RedisConnectionError):
            raise
        raise RedisConnectionError(f"could not connect to Redis at {where}: {exc}") from exc
    conn._on_push = on_push
    return conn


def setup_commands(target: Target) -> list[bytes]:
    """AUTH and SELECT as the URL asks (none for a default connection)."""
    commands = []
    if target.password is not None:
        auth = ["AUTH", target.username, target.password] if target.username else ["AUTH", target.password]
        commands.append(pack(auth))
    if target.db:
        commands.append(pack(["SELECT", target.db]))
    return commands
