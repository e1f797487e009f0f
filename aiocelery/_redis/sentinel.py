"""Finding a Redis master through Sentinel, asynchronously (the pool, pub/sub) and from threads.

A Target with ``sentinels`` names no server: each new connection asks the sentinels, in order,
for the current address of the master ``service`` (``SENTINEL get-master-addr-by-name``), then
connects to it and checks with ``ROLE`` that it is the master (a sentinel may not have seen a
failover yet, and a demoted master answers as a replica). A failover is followed by reconnecting:
connections to a killed master fail, and a write answered ``READONLY`` by a demoted one drops its
connection (``client.py``); the next connection asks the sentinels again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from typing import TYPE_CHECKING, Any

import hiredis

from aiocelery._redis.errors import RedisConnectionError, ReplyError
from aiocelery._redis.tls import ssl_context
from aiocelery._redis.wire import pack

if TYPE_CHECKING:  # connection.py imports this module
    from aiocelery._redis.connection import Target


def _ask(service: str) -> bytes:
    return pack(("SENTINEL", "get-master-addr-by-name", service))


def _auth(target: Target) -> list[bytes]:
    if target.sentinel_password is None:
        return []
    user = target.sentinel_username
    return [pack(("AUTH", user, target.sentinel_password) if user else ("AUTH", target.sentinel_password))]


class _Question:
    """The request to a sentinel (AUTH if it needs one, then where the master is) and its replies."""

    def __init__(self, target: Target) -> None:
        commands = [*_auth(target), _ask(target.service or "")]
        self.request = b"".join(commands)
        self._count = len(commands)
        self._parser = hiredis.Reader(replyError=ReplyError)
        self._replies: list[Any] = []

    def answer(self, data: bytes) -> list[Any] | None:
        """Feed what the sentinel sent; every reply once all came (None: read more)."""
        if not data:
            raise RedisConnectionError("connection closed")
        self._parser.feed(data)
        while len(self._replies) < self._count and (reply := self._parser.gets()) is not False:
            self._replies.append(reply)
        return self._replies if len(self._replies) == self._count else None


def _master(target: Target, where: str, replies: list[Any]) -> Target:
    """The Target of the master a sentinel named (its reply is the last one)."""
    for reply in replies[:-1]:
        if isinstance(reply, ReplyError):
            raise RedisConnectionError(f"sentinel {where} refused AUTH: {reply}")
    reply = replies[-1]
    if isinstance(reply, ReplyError):
        raise RedisConnectionError(f"sentinel {where} answered {reply}")
    if not reply:
        raise RedisConnectionError(f"sentinel {where} does not know master {target.service!r}")
    host, port = reply[0].decode(), int(reply[1])
    return dataclasses.replace(target, host=host, port=port, sentinels=(), check_master=True)


def _unreachable(target: Target, errors: list[str]) -> RedisConnectionError:
    return RedisConnectionError(
        f"no sentinel gave the address of master {target.service!r} ({'; '.join(errors)}); check that the "
        "sentinels run, that the master name is the one they monitor, and their password (sentinel_password)")


async def resolve_master(target: Target) -> Target:
    """The master's Target, from the first sentinel that answers (raises RedisConnectionError)."""
    errors: list[str] = []
    for host, port in target.sentinels:
        where = f"{host}:{port}"
        writer: asyncio.StreamWriter | None = None
        try:
            context = ssl_context(target.tls) if target.tls else None
            reader, writer = await asyncio.open_connection(host, port, ssl=context)
            question = _Question(target)
            writer.write(question.request)
            while (replies := question.answer(await reader.read(65536))) is None:
                pass
            return _master(target, where, replies)
        except (OSError, RedisConnectionError) as exc:
            errors.append(f"{where}: {exc}")
        finally:
            if writer is not None:
                writer.close()
    raise _unreachable(target, errors)


def resolve_master_sync(target: Target, timeout: float) -> Target:
    """``resolve_master`` with blocking sockets, each bounded by ``timeout``."""
    errors: list[str] = []
    for host, port in target.sentinels:
        where = f"{host}:{port}"
        try:
            with socket.create_connection((host, port), timeout=timeout) as raw:
                sock = ssl_context(target.tls).wrap_socket(raw, server_hostname=host) if target.tls else raw
                question = _Question(target)
                sock.sendall(question.request)
                while (replies := question.answer(sock.recv(65536))) is None:
                    pass
                return _master(target, where, replies)
        except (OSError, RedisConnectionError) as exc:
            errors.append(f"{where}: {exc}")
    raise _unreachable(target, errors)


def check_master(target: Target, reply: Any) -> None:
    """The ``ROLE`` reply of a server a sentinel named: it must be the master."""
    role = reply[0] if isinstance(reply, list) and reply else reply
    if role != b"master":
        raise RedisConnectionError(f"Redis at {target.where}, named master {target.service!r} by a sentinel, is a "
                                   f"{role.decode() if isinstance(role, bytes) else role} (a failover is under way)")
