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
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, cast

import hiredis

from aiocelery._redis.errors import ProtocolError, RedisConnectionError, RedisRefused, RedisTimeoutError, ReplyError
from aiocelery._redis.sentinel import check_master, resolve_master
from aiocelery._redis.tls import TLSOptions, ssl_context
from aiocelery._redis.wire import pack


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how to connect: a TCP host and port (with TLS when ``tls`` is set) or a unix
    socket ``path``, the credentials for AUTH and the database for SELECT. Built from a URL by
    ``aiocelery.urls``; this package parses no URLs."""

    host: str = "localhost"
    port: int = 6379
    path: str | None = None
    """A unix socket; when set, ``host``, ``port`` and ``tls`` are not used."""
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: TLSOptions | None = None
    """None: plain TCP."""
    sentinels: tuple[tuple[str, int], ...] = ()
    """Sentinel addresses: when set, each connection asks them where master ``service`` is
    (``sentinel.py``), and ``host`` and ``port`` are not used."""
    service: str | None = None
    """The master name the sentinels monitor."""
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    """AUTH for the sentinels themselves (the master's is ``username``/``password``)."""
    check_master: bool = False
    """Check with ROLE that the server is a master (set on a Target a sentinel named)."""

    @property
    def where(self) -> str:
        """``host:port``, the socket path, or the sentinels and master name, for error messages."""
        if self.sentinels:
            return f"master {self.service!r} of sentinels {','.join(f'{h}:{p}' for h, p in self.sentinels)}"
        return self.path or f"{self.host}:{self.port}"


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
    """Connect (TLS handshake included), authenticate and select the database, all within
    ``connect_timeout`` seconds; raises ``RedisConnectionError`` (a half-open connection is closed)."""
    conn: Connection | None = None
    try:
        async with asyncio.timeout(connect_timeout):
            if target.sentinels:
                target = await resolve_master(target)
            conn = await _connect(target)
            await _set_up(conn, target)
    except BaseException as exc:
        if conn is not None:
            conn.abort()
        if isinstance(exc, TimeoutError):
            raise RedisConnectionError(
                f"could not connect to Redis at {target.where} within {connect_timeout} s") from None
        if isinstance(exc, ssl.SSLError):
            raise tls_failure(target.where, exc) from exc
        if isinstance(exc, OSError) and not isinstance(exc, RedisConnectionError):
            raise RedisConnectionError(f"could not connect to Redis at {target.where}: {exc}") from exc
        raise
    conn._on_push = on_push
    return conn


async def _connect(target: Target) -> Connection:
    loop = asyncio.get_running_loop()
    if target.path:
        _, conn = await loop.create_unix_connection(Connection, target.path)
    else:
        context = ssl_context(target.tls) if target.tls else None
        _, conn = await loop.create_connection(Connection, target.host, target.port, ssl=context)
    return conn


async def _set_up(conn: Connection, target: Target) -> None:
    setup = setup_commands(target)
    if not setup:
        return
    try:
        replies = await conn.send(b"".join(setup), len(setup))
    except RedisConnectionError as exc:
        if target.tls is None:
            raise
        raise tls_dropped(target.where, exc) from exc
    check_setup(target, replies)


def check_setup(target: Target, replies: list[Any]) -> None:
    """The replies to ``setup_commands``: RedisConnectionError for a refusal, or (``check_master``)
    a server that is not the master."""
    for reply in replies[:-1] if target.check_master else replies:
        if isinstance(reply, ReplyError):
            raise RedisRefused(f"Redis at {target.where} refused the connection setup: {reply}")
    if target.check_master:
        check_master(target, replies[-1])


def tls_failure(where: str, exc: ssl.SSLError) -> RedisConnectionError:
    """The error for a TLS handshake that failed, saying what to check."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        hint = ("the server's certificate is not trusted: give the CA file that signed it, or connect by a "
                "host name its certificate names")
    else:
        hint = ("check that the server speaks TLS on this port and, if it checks clients, that a client "
                "certificate and key it trusts are given")
    detail = getattr(exc, "verify_message", None) or exc.reason or str(exc)
    kind = RedisRefused if isinstance(exc, ssl.SSLCertVerificationError) else RedisConnectionError
    return kind(f"TLS handshake with Redis at {where} failed ({detail}); {hint}")


def tls_dropped(where: str, exc: OSError) -> RedisConnectionError:
    """The error for a TLS connection that the server closed before its setup replied: with
    TLS 1.3 a server refuses a client certificate (or its absence) only after the handshake."""
    return RedisConnectionError(
        f"Redis at {where} closed the TLS connection before replying to its setup ({exc}); if it checks "
        "client certificates (tls-auth-clients), give a client certificate and key signed by a CA it trusts")


def setup_commands(target: Target) -> list[bytes]:
    """AUTH and SELECT as the target asks; on TLS at least a PING, so that a server refusing the
    client's certificate after the handshake is found out while connecting. None for a plain
    default connection."""
    commands = []
    if target.password is not None:
        auth = ["AUTH", target.username, target.password] if target.username else ["AUTH", target.password]
        commands.append(pack(auth))
    if target.db:
        commands.append(pack(["SELECT", target.db]))
    if target.check_master:
        commands.append(pack(["ROLE"]))
    elif target.tls is not None and not target.path and not commands:
        commands.append(pack(["PING"]))
    return commands
