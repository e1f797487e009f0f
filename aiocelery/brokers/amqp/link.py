"""The connection to RabbitMQ: one robust aio-pika connection per process, the topology (a durable
exchange, durable quorum or classic queues, their bindings) and publishing with publisher confirms.

aio-pika's robust connection reopens itself, its channels and their consumers after a connection
loss; until it has, a call fails with ``ConnectionError`` (``brokers/base.py``'s transient errors),
which the callers retry as they retry a lost Redis connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import NamedTuple

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection, DeliveryMode
from aio_pika.exceptions import AMQPError, ChannelPreconditionFailed

from aiocelery._redis.tls import ssl_context
from aiocelery.config import AMQPConfig
from aiocelery.exceptions import ConfigError
from aiocelery.urls import AmqpTarget

log = logging.getLogger("aiocelery.broker")

AMQP_ERRORS: tuple[type[BaseException], ...] = (AMQPError, aiormq.exceptions.AMQPError)
"""What aio-pika and aiormq raise besides the builtin connection errors."""
AMQP_OR_OS_ERRORS: tuple[type[BaseException], ...] = (*AMQP_ERRORS, OSError)
"""AMQP errors and the builtin connection errors (ConnectionError and TimeoutError are OSErrors)."""
CHANNEL_GONE: tuple[type[BaseException], ...] = (*AMQP_OR_OS_ERRORS, RuntimeError)
"""What acking on a channel that closed meanwhile may raise (aio-pika: RuntimeError or its errors)."""
CONNECTION_DOWN: tuple[type[BaseException], ...] = (*AMQP_ERRORS, RuntimeError)
"""What opening a channel or publishing may raise while the connection is lost: the AMQP errors, and
aio-pika's RuntimeError for a connection or channel that closed (until the robust connection is back);
turned into ConnectionError, which the callers retry (and the App reports as SendError)."""


class Publication(NamedTuple):
    """One message for RabbitMQ: task ``task_id`` as publication ``pub``, to ``queue``."""

    queue: str
    task_id: str
    pub: int
    name: str


def message_body(task_id: str, pub: int) -> bytes:
    """What a message carries: the publication number and the task id (the record is in Redis)."""
    return b"%d %s" % (pub, task_id.encode())


def parse_body(body: bytes) -> tuple[str, str] | None:
    """(task id, publication) from a message body; None when it is not aiocelery's."""
    pub, space, task_id = body.partition(b" ")
    if not space or not pub.isdigit() or not task_id or len(task_id) > 1024:
        return None
    try:
        return task_id.decode(), pub.decode()
    except UnicodeDecodeError:
        return None


class AmqpLink:
    """The process's connection to RabbitMQ and the topology it declared."""

    def __init__(self, target: AmqpTarget, settings: AMQPConfig, default_queue: str, *,
                 connect_timeout_s: float) -> None:
        self._target = target
        self._settings = settings
        self._default_queue = default_queue
        self._connect_timeout_s = connect_timeout_s
        self._connection: AbstractRobustConnection | None = None
        self._opening = asyncio.Lock()
        self._publishing = asyncio.Lock()
        """Held while the publishing channel is (re)opened: concurrent sends share one."""
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._declared: set[str] = set()

    @property
    def settings(self) -> AMQPConfig:
        """The AMQP block of the Config."""
        return self._settings

    async def connection(self) -> AbstractRobustConnection:
        """The robust connection, opened on first use (ConnectionError while RabbitMQ is unreachable)."""
        if self._connection is not None:
            return self._connection
        async with self._opening:
            if self._connection is None:
                t = self._target
                try:
                    self._connection = await aio_pika.connect_robust(
                        host=t.host, port=t.port, login=t.username, password=t.password, virtualhost=t.vhost,
                        ssl=t.tls is not None, ssl_context=ssl_context(t.tls) if t.tls is not None else None,
                        timeout=self._connect_timeout_s, client_properties={"connection_name": "aiocelery"},
                        heartbeat=t.heartbeat_s)
                except AMQP_ERRORS as exc:
                    raise ConnectionError(f"cannot connect to RabbitMQ at {t.host}:{t.port} vhost {t.vhost!r}: "
                                          f"{type(exc).__name__}: {exc}") from exc
            return self._connection

    async def channel(self, prefetch: int | None = None) -> AbstractChannel:
        """A new channel with publisher confirms (and ``prefetch`` unacknowledged deliveries per consumer)."""
        connection = await self.connection()
        try:
            channel = await connection.channel(publisher_confirms=True)
            if prefetch is not None:
                await channel.set_qos(prefetch_count=prefetch)
        except CONNECTION_DOWN as exc:
            raise ConnectionError(f"RabbitMQ: cannot open a channel: {type(exc).__name__}: {exc}") from exc
        return channel

    async def _publisher(self) -> tuple[AbstractChannel, AbstractExchange]:
        if self._channel is None or self._channel.is_closed or self._exchange is None:
            async with self._publishing:
                if self._channel is None or self._channel.is_closed or self._exchange is None:
                    await self._open_publisher()
        assert self._channel is not None and self._exchange is not None
        return self._channel, self._exchange

    async def _open_publisher(self) -> None:
        self._channel = await self.channel()
        s = self._settings
        try:
            self._exchange = await self._channel.declare_exchange(s.exchange, s.exchange_type, durable=True)
        except ChannelPreconditionFailed as exc:
            self._channel = None
            raise ConfigError(f"RabbitMQ already has an exchange {s.exchange!r} that is not a durable "
                              f"{s.exchange_type} exchange ({exc}); delete it or set AMQPConfig.exchange to "
                              "another name") from exc
        except CONNECTION_DOWN as exc:
            raise ConnectionError(f"RabbitMQ: declaring exchange {s.exchange!r} failed: {type(exc).__name__}: "
                                  f"{exc}") from exc

    async def declare(self, queues: Sequence[str]) -> None:
        """Declare each queue (durable; quorum unless configured classic) and bind it to the
        exchange under its name (the default queue also under the binding key). Idempotent; each
        queue once per process."""
        missing = [q for q in queues if q not in self._declared]
        if not missing:
            return
        channel, exchange = await self._publisher()
        s = self._settings
        for queue in missing:
            try:
                declared = await channel.declare_queue(queue, durable=True, arguments={"x-queue-type": s.queue_type})
                await declared.bind(exchange, routing_key=queue)
                if queue == self._default_queue and s.binding_key != queue:
                    await declared.bind(exchange, routing_key=s.binding_key)
            except ChannelPreconditionFailed as exc:
                self._channel = None
                raise ConfigError(f"RabbitMQ already has a queue {queue!r} declared differently ({exc.args[0]}); "
                                  f"aiocelery declares it durable with x-queue-type={s.queue_type}: delete the "
                                  "queue, or set AMQPConfig.queue_type to match it") from exc
            except CONNECTION_DOWN as exc:
                raise ConnectionError(f"RabbitMQ: declaring queue {queue!r} failed: {type(exc).__name__}: {exc}") \
                    from exc
            self._declared.add(queue)

    async def publish(self, items: Sequence[Publication], timeout_s: float | None) -> None:
        """Publish every item, persistent, and return when RabbitMQ confirmed them all (all at once,
        each bounded by ``timeout_s``: TimeoutError). ConnectionError when RabbitMQ refused one."""
        if not items:
            return
        await self.declare(sorted({p.queue for p in items}))
        _, exchange = await self._publisher()
        try:
            results = await asyncio.gather(*(
                exchange.publish(aio_pika.Message(message_body(p.task_id, p.pub), message_id=p.task_id, type=p.name,
                                                  delivery_mode=DeliveryMode.PERSISTENT),
                                 routing_key=p.queue, timeout=timeout_s)
                for p in items))
        except CONNECTION_DOWN as exc:
            raise ConnectionError(f"RabbitMQ did not take {len(items)} message(s): {type(exc).__name__}: {exc}") \
                from exc
        for result in results:
            if not isinstance(result, aiormq.spec.Basic.Ack):
                raise ConnectionError(f"RabbitMQ did not confirm a message ({type(result).__name__}); it may "
                                      "not be stored")

    async def queue_counts(self, queue: str) -> tuple[int, int]:
        """(ready messages, consumers) of ``queue`` (a passive declare); (0, 0) when it does not exist."""
        channel = await self.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
            result = declared.declaration_result
            return int(result.message_count or 0), int(result.consumer_count or 0)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return 0, 0
        finally:
            if not channel.is_closed:
                await channel.close()

    async def purge(self, queue: str) -> int:
        """Drop every ready message of ``queue``; how many."""
        await self.declare([queue])
        channel, _ = await self._publisher()
        declared = await channel.get_queue(queue, ensure=False)
        result = await declared.purge()
        return int(result.message_count or 0)

    async def close(self) -> None:
        """Close the connection (and with it every channel)."""
        connection, self._connection = self._connection, None
        self._channel = self._exchange = None
        self._declared.clear()
        if connection is not None:
            await connection.close()
