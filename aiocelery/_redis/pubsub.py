"""One pub/sub connection per process, multiplexing every waiter (see docs/delivery.md, "Results
that cannot be missed").

``await hub.subscribe(channel, listener)`` returns only after Redis confirmed the subscription,
so a caller that reads the state afterwards cannot miss a message published in between.
A listener is called with each message's data, and with ``None`` after a reconnect (once its
channel is subscribed again) to say "messages may have been missed: re-read".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiocelery._redis.connection import Connection, Target, open_connection
from aiocelery._redis.delays import RetryDelays
from aiocelery._redis.errors import RedisConnectionError
from aiocelery._redis.wire import pack

Listener = Callable[[bytes | None], None]
log = logging.getLogger("aiocelery.pubsub")


@dataclass(eq=False, slots=True)
class _Channel:
    listeners: list[Listener] = field(default_factory=list)
    confirmed: asyncio.Event = field(default_factory=asyncio.Event)
    unconfirmed_subs: int = 0
    resync: bool = False


class PubSubHub:
    """Owns one subscriber connection and its reader task; reconnects by itself."""

    def __init__(self, target: Target, *, connect_timeout: float = 5.0) -> None:
        self._target = target
        self._connect_timeout = connect_timeout
        self._channels: dict[str, _Channel] = {}
        self._orphan_subs: dict[str, int] = {}
        self._conn: Connection | None = None
        self._reader: asyncio.Task[None] | None = None
        self.reconnects = 0

    async def subscribe(self, channel: str, listener: Listener) -> None:
        """Register ``listener`` and wait until Redis confirmed the channel's subscription."""
        self._start()
        ch = self._channels.get(channel)
        if ch is None:
            ch = self._channels[channel] = _Channel()
            ch.listeners.append(listener)
            ch.unconfirmed_subs += 1
            await self._send("SUBSCRIBE", channel)
        else:
            ch.listeners.append(listener)
        await ch.confirmed.wait()

    async def unsubscribe(self, channel: str, listener: Listener) -> None:
        """Remove ``listener``; the channel is unsubscribed when its last listener leaves."""
        ch = self._channels.get(channel)
        if ch is None or listener not in ch.listeners:
            return
        ch.listeners.remove(listener)
        if ch.listeners:
            return
        del self._channels[channel]
        if ch.unconfirmed_subs:
            self._orphan_subs[channel] = self._orphan_subs.get(channel, 0) + ch.unconfirmed_subs
        await self._send("UNSUBSCRIBE", channel)

    async def close(self) -> None:
        """Stop the reader and drop the connection."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        await self._drop()

    def _start(self) -> None:
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._read_forever(), name="aiocelery-pubsub")

    async def _send(self, *args: str) -> None:
        conn = self._conn
        if conn is None:
            return  # the reader resubscribes every channel when it connects
        try:
            conn.write(pack(args))
        except OSError as exc:
            log.debug("pub/sub send failed (%s); the reader reconnects and resubscribes", exc)

    async def _read_forever(self) -> None:
        delays = RetryDelays()
        while True:
            try:
                conn = await self._connect()
                delays.reset()
                await conn.wait_closed()
                raise RedisConnectionError("connection closed by Redis")
            except OSError as exc:
                delay = delays.next()
                log.warning("pub/sub connection lost (%s); reconnecting in %.2f s", exc, delay)
                await self._drop()
                await asyncio.sleep(delay)

    async def _connect(self) -> Connection:
        conn = await open_connection(self._target, connect_timeout=self._connect_timeout, on_push=self._on_push)
        if self.reconnects or self._channels:
            self._orphan_subs.clear()
            for ch in self._channels.values():
                ch.unconfirmed_subs = 1
                ch.resync = True
                ch.confirmed.clear()
        self._conn = conn
        self.reconnects += 1
        if self._channels:
            conn.write(pack(["SUBSCRIBE", *self._channels]))
        return conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.abort()
            with contextlib.suppress(Exception):
                await conn.wait_closed()

    def _on_push(self, reply: Any) -> None:
        """Every reply on the connection: messages and subscription confirmations."""
        if not isinstance(reply, list) or len(reply) < 3:
            return
        kind, channel = reply[0], reply[1].decode()
        if kind == b"message":
            self._deliver(channel, reply[2])
        elif kind == b"subscribe":
            self._confirm(channel)

    def _deliver(self, channel: str, data: bytes | None) -> None:
        ch = self._channels.get(channel)
        if ch is None:
            return
        for listener in list(ch.listeners):
            try:
                listener(data)
            except Exception:  # a listener must never stop the reader
                log.exception("pub/sub listener for %s failed", channel)

    def _confirm(self, channel: str) -> None:
        orphans = self._orphan_subs.get(channel, 0)
        if orphans:
            self._orphan_subs[channel] = orphans - 1
            return
        ch = self._channels.get(channel)
        if ch is None:
            return
        ch.unconfirmed_subs = max(0, ch.unconfirmed_subs - 1)
        if ch.unconfirmed_subs == 0:
            ch.confirmed.set()
            if ch.resync:
                ch.resync = False
                self._deliver(channel, None)
