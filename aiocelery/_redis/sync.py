"""A blocking one-connection Redis client for threads (the lease keeper), hiredis-parsed.

It never touches an event loop, so a task blocking the loop cannot stop what it does. Any
failure closes the socket; the next call connects again.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Sequence
from typing import Any

import hiredis

from aiocelery._redis.connection import Target, check_setup, setup_commands, tls_dropped, tls_failure
from aiocelery._redis.errors import RedisConnectionError, RedisTimeoutError, ReplyError
from aiocelery._redis.scripts import Script
from aiocelery._redis.sentinel import resolve_master_sync
from aiocelery._redis.tls import ssl_context
from aiocelery._redis.wire import CommandPart, evalsha, pack


class SyncClient:
    """Connects lazily; every socket operation is bounded by ``timeout``; no retries."""

    def __init__(self, target: Target, timeout: float) -> None:
        self._target = target
        self._timeout = timeout
        self._sock: socket.socket | None = None
        self._reader = hiredis.Reader(replyError=ReplyError)
        self._shas: dict[str, str] = {}

    def run_script(self, script: Script, keys: Sequence[CommandPart], args: Sequence[CommandPart]) -> Any:
        """EVALSHA, loading the script on NOSCRIPT; returns the reply or raises its error."""
        sha = self._shas.get(script.text)
        if sha is not None:
            (reply,) = self.execute([evalsha(sha, keys, args)])
            if not (isinstance(reply, ReplyError) and reply.code == "NOSCRIPT"):
                if isinstance(reply, ReplyError):
                    raise reply
                return reply
        (loaded,) = self.execute([pack(("SCRIPT", "LOAD", script.text))])
        if isinstance(loaded, ReplyError):
            raise ReplyError(f"script {script.name}.lua does not load: {loaded}")
        sha = self._shas[script.text] = loaded.decode()
        (reply,) = self.execute([evalsha(sha, keys, args)])
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    def execute(self, commands: list[bytes]) -> list[Any]:
        """Send packed ``commands`` and read their replies (error replies in place)."""
        try:
            sock = self._sock or self._connect()
            replies = self._exchange(sock, commands)
            if any(isinstance(r, ReplyError) and r.code == "READONLY" for r in replies):
                self.close()  # a failover demoted this server: the next call asks the sentinels again
                raise RedisConnectionError("Redis answered READONLY: it is a replica now (a failover?)")
            return replies
        except TimeoutError:
            self.close()
            raise RedisTimeoutError(f"no reply from Redis within {self._timeout} s") from None
        except ssl.SSLError as exc:
            self.close()
            raise tls_failure(self._target.where, exc) from exc
        except OSError as exc:
            self.close()
            if isinstance(exc, RedisConnectionError):
                raise
            raise RedisConnectionError(f"connection to Redis failed: {exc}") from exc
        except BaseException:
            self.close()
            raise

    def _exchange(self, sock: socket.socket, commands: list[bytes]) -> list[Any]:
        sock.sendall(b"".join(commands))
        replies: list[Any] = []
        while len(replies) < len(commands):
            reply = self._reader.gets()
            if reply is False:
                data = sock.recv(65536)
                if not data:
                    raise RedisConnectionError("connection closed by Redis")
                self._reader.feed(data)
            else:
                replies.append(reply)
        return replies

    def _connect(self) -> socket.socket:
        t = self._target
        if t.sentinels:
            t = resolve_master_sync(t, self._timeout)
        if t.path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self._timeout)
            sock.connect(t.path)
        else:
            sock = socket.create_connection((t.host, t.port), timeout=self._timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if t.tls:
                try:
                    sock = ssl_context(t.tls).wrap_socket(sock, server_hostname=t.host)
                except BaseException:
                    sock.close()
                    raise
        self._reader = hiredis.Reader(replyError=ReplyError)
        setup = setup_commands(t)
        try:
            replies = self._exchange(sock, setup) if setup else []
        except TimeoutError:
            sock.close()
            raise
        except OSError as exc:  # ssl.SSLError too
            sock.close()
            if t.tls is None:
                raise
            raise tls_dropped(t.where, exc) from exc
        try:
            check_setup(t, replies)
        except RedisConnectionError:
            sock.close()
            raise
        self._sock = sock
        return sock

    def close(self) -> None:
        """Close the socket (the next call reconnects)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
