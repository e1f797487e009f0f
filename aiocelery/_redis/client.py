"""aiocelery's Redis client: a small pool of connections, hiredis for parsing and packing.

A call (one command, or many in one write) has a connection to itself for its round trip, so
anything unexpected on it (a timeout, a lost or garbled reply) drops just that connection and
can never shift replies onto another caller. Concurrent script calls are merged before they
get here (``ScriptBatcher``), so a busy process still uses few connections; callers beyond
``max_connections`` wait for one. A call's wait is bounded by the socket timeout (and, when
given, its own ``timeout_s``); calls failed by a lost or silent connection are retried with
jittered backoff: callers send only writes that are safe to repeat (idempotent scripts, or
commands idempotent by themselves).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence
from typing import Any

from aiocelery._redis.connection import Connection, Target, open_connection
from aiocelery._redis.delays import RetryDelays
from aiocelery._redis.errors import NotReplicated, RedisConnectionError, RedisRefused, RedisTimeoutError, ReplyError
from aiocelery._redis.scripts import Script
from aiocelery._redis.wire import CommandPart, evalsha, pack

MIN_TRY_S = 0.05
"""A call with a deadline gives up when less than this is left: a try needs some time."""


class Client:
    """A lazily connecting, reconnecting Redis client (see the module docstring)."""

    def __init__(self, target: Target, *, max_connections: int = 64, socket_timeout: float | None = 10.0,
                 connect_timeout: float = 5.0, attempts: int = 4) -> None:
        self.target = target
        self._max = max_connections
        self._socket_timeout = socket_timeout
        self._connect_timeout = connect_timeout
        self._attempts = attempts
        self._idle: list[Connection] = []
        self._count = 0
        """Connections open, being opened, or in use."""
        self._queue: collections.deque[asyncio.Future[Connection | None]] = collections.deque()
        """Callers waiting for a connection: handed one, or None (open one yourself)."""
        self._busy: set[Connection] = set()
        self._closed = False
        self._shas: dict[str, str] = {}
        """Script text -> SHA1, as SCRIPT LOAD answered (no hashlib import: 0.7 MB per process)."""

    async def call(self, *args: CommandPart) -> Any:
        """Run one command; returns its reply or raises its ``ReplyError``."""
        (reply,) = await self.execute([pack(args)])
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    async def call_many(self, commands: Sequence[Sequence[CommandPart]]) -> list[Any]:
        """Run ``commands`` in one round trip; error replies come back in place, as ``ReplyError``."""
        return await self.execute([pack(c) for c in commands]) if commands else []

    async def run_script(self, script: Script, keys: Sequence[CommandPart], args: Sequence[CommandPart]) -> Any:
        """EVALSHA ``script``; returns its reply or raises its error."""
        (reply,) = await self.run_scripts(script, [(keys, args)])
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    async def run_scripts(self, script: Script, calls: Sequence[tuple[Sequence[CommandPart], Sequence[CommandPart]]], *,
                          timeout_s: float | None = None, replicas: int = 0) -> list[Any]:
        """EVALSHA ``script`` once per (keys, args) in one round trip; replies in place. A NOSCRIPT
        reply (Redis restarted or flushed its script cache) loads the script and runs them again.

        With ``replicas``, a ``WAIT`` on the same connection follows the scripts (bounded by
        ``timeout_s``, else 10 s), and ``NotReplicated`` is raised when fewer replicas than that
        acknowledged the writes."""
        sha = self._shas.get(script.text) or await self._load(script, timeout_s)
        if replicas:
            replies = await self._waited(sha, calls, timeout_s, replicas)
        else:  # the hot path: no extra coroutine
            replies = await self.execute([evalsha(sha, keys, args) for keys, args in calls], timeout_s=timeout_s)
        if any(isinstance(r, ReplyError) and r.code == "NOSCRIPT" for r in replies):
            sha = await self._load(script, timeout_s)
            replies = await self._waited(sha, calls, timeout_s, replicas)
        return replies

    async def _waited(self, sha: str, calls: Sequence[tuple[Sequence[CommandPart], Sequence[CommandPart]]],
                      timeout_s: float | None, replicas: int) -> list[Any]:
        """The scripts, then (with ``replicas``) WAIT for that many replicas, in one round trip."""
        commands = [evalsha(sha, keys, args) for keys, args in calls]
        if not replicas:
            return await self.execute(commands, timeout_s=timeout_s)
        # WAIT ends before the round trip's own limit, leaving it some of the time
        wait_ms = int(min(timeout_s or 10.0, self._socket_timeout or 10.0) * 1000 * 0.8)
        *replies, acked = await self.execute([*commands, pack(("WAIT", replicas, wait_ms))], timeout_s=timeout_s)
        if isinstance(acked, ReplyError) or int(acked) < replicas:
            raise NotReplicated(f"the write is on the Redis master but {acked} of the {replicas} replica(s) asked for "
                                f"(min_replica_acks) acknowledged it within {wait_ms} ms")
        return replies

    async def _load(self, script: Script, timeout_s: float | None) -> str:
        """SCRIPT LOAD: Redis compiles the script and names it by its SHA1."""
        (reply,) = await self.execute([pack(("SCRIPT", "LOAD", script.text))], timeout_s=timeout_s)
        if isinstance(reply, ReplyError):
            raise ReplyError(f"script {script.name}.lua does not load: {reply}")
        sha: str = reply.decode()
        self._shas[script.text] = sha
        return sha

    async def execute(self, commands: list[bytes], *, timeout_s: float | None = None) -> list[Any]:
        """Send packed ``commands`` in one write and return their replies, error replies in place.

        Each attempt must end within the socket timeout and, with ``timeout_s``, all attempts
        within that. A lost connection, or one on which the wait timed out, is retried on a new
        connection: ``attempts`` times, or with ``timeout_s`` as long as it lasts. The wait for
        replies is bounded by the connection's own deadline timer (no
        timer per call); waiting for a free connection, which is rare, by ``asyncio.timeout``.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        data = commands[0] if len(commands) == 1 else b"".join(commands)
        delays: RetryDelays | None = None
        attempt = 0
        while True:
            attempt += 1
            limit = _limit(self._socket_timeout, None if deadline is None else deadline - loop.time())
            conn: Connection | None = None
            try:
                conn = self._take_idle()
                if conn is None:
                    async with asyncio.timeout(limit):
                        conn = await self._acquire()
                    limit = _limit(self._socket_timeout, None if deadline is None else deadline - loop.time())
                replies = _from_master(conn, await conn.send(data, len(commands), limit), self.target)
                self._release(conn)
                return replies
            except TimeoutError:
                if conn is not None:  # stalled, or a reply went missing: never reuse it
                    conn.abort(RedisTimeoutError(f"a reply took over {limit} s; connection dropped"))
                error: Exception = RedisTimeoutError(f"no reply from Redis within {limit} s")
            except RedisConnectionError as exc:
                error = exc
            except BaseException:
                if conn is not None:  # cancelled mid round trip: its reply must reach nobody else
                    conn.abort()
                    self._release(conn)
                raise
            if conn is not None:
                self._release(conn)
            remaining = None if deadline is None else deadline - loop.time()
            if self._gives_up(error, attempt, remaining):
                raise error
            delays = delays or RetryDelays(base=0.05, cap=1.0)
            delay = delays.next()  # with a deadline, half what is left at most: time for the next try
            await asyncio.sleep(delay if remaining is None else min(delay, remaining / 2))

    def _gives_up(self, error: Exception, attempt: int, remaining: float | None) -> bool:
        """After a failed try: closed, refused for good (TLS certificate, AUTH), or out of tries. With a
        deadline, tries go on until it (a Sentinel failover takes seconds); else ``attempts`` of them."""
        if self._closed or isinstance(error, RedisRefused):
            return True
        return attempt >= self._attempts if remaining is None else remaining <= MIN_TRY_S

    def _take_idle(self) -> Connection | None:
        """An idle open connection, marked busy (None: none is idle)."""
        while self._idle:
            conn = self._idle.pop()
            if conn.is_open:
                self._busy.add(conn)
                return conn
            self._count -= 1
        return None

    async def _acquire(self) -> Connection:
        """When none is idle (the caller tried ``_take_idle`` first): a new connection while under
        ``max_connections``, else the next one released."""
        if self._closed:
            raise RedisConnectionError("the Redis client is closed")
        if self._count >= self._max:
            future: asyncio.Future[Connection | None] = asyncio.get_running_loop().create_future()
            self._queue.append(future)
            try:
                handed = await future
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():
                    self._pass_on(future.result())  # handed over as we were cancelled: not ours
                raise
            if handed is not None:
                return handed
        else:
            self._count += 1
        try:
            conn = await open_connection(self.target, connect_timeout=self._connect_timeout)
        except BaseException:
            self._pass_on(None)
            raise
        self._busy.add(conn)
        return conn

    def _release(self, conn: Connection) -> None:
        """Give ``conn`` back: to the next waiting caller, or to the idle list (closed: forgotten)."""
        self._busy.discard(conn)
        if conn.is_open and not self._closed:
            self._pass_on(conn)
        else:
            conn.abort()
            self._pass_on(None)

    def _pass_on(self, conn: Connection | None) -> None:
        """Hand ``conn`` (or, for None, the right to open one) to the first caller still waiting."""
        while self._queue:
            future = self._queue.popleft()
            if not future.done():
                if conn is not None:
                    self._busy.add(conn)
                future.set_result(conn)
                return
        if conn is None:
            self._count -= 1
        else:
            self._idle.append(conn)

    async def aclose(self) -> None:
        """Close every connection; later calls raise ``RedisConnectionError``."""
        self._closed = True
        conns = self._idle + list(self._busy)
        self._idle.clear()
        self._busy.clear()
        for conn in conns:
            conn.abort()
        for conn in conns:
            await conn.wait_closed()


def _limit(socket_timeout: float | None, remaining: float | None) -> float | None:
    """The time one attempt gets: the socket timeout, capped by what is left of the call's."""
    if remaining is None:
        return socket_timeout
    return max(0.0, remaining if socket_timeout is None else min(socket_timeout, remaining))


def command_client(target: Target, max_connections: int, *, socket_timeout: float = 10.0,
                   connect_timeout: float = 5.0) -> Client:
    """The process's client for commands and scripts."""
    return Client(target, max_connections=max_connections, socket_timeout=socket_timeout,
                  connect_timeout=connect_timeout)


def blocking_client(target: Target, block_s: float, *, socket_timeout: float = 10.0,
                    connect_timeout: float = 5.0) -> Client:
    """A one-connection client for blocking reads of up to ``block_s`` seconds (one retry).

    Its reply wait is derived, not a setting: the block plus ``socket_timeout``, so a reply that
    comes at the end of the block is not taken for a silent connection.
    """
    return Client(target, max_connections=1, socket_timeout=block_s + socket_timeout,
                  connect_timeout=connect_timeout, attempts=2)


def _from_master(conn: Connection, replies: list[Any], target: Target) -> list[Any]:
    """``replies``, unless a write was refused with READONLY: a failover made the server a replica.
    Then the connection is dropped and RedisConnectionError raised, so the commands go again to a
    new connection, to the master (every write aiocelery sends is safe to repeat)."""
    if any(isinstance(r, ReplyError) and r.code == "READONLY" for r in replies):
        conn.abort(RedisConnectionError("READONLY"))
        raise RedisConnectionError(f"Redis ({target.where}) answered READONLY: the server is a replica now "
                                   "(a failover?); the commands are sent again")
    return replies

