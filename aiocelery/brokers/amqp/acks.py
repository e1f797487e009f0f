"""Acknowledging RabbitMQ messages in batches.

Outcomes are stored one by one, but their acknowledgements can travel together: the acks asked
for in one turn of the event loop go out after it, per channel, as one ``basic.ack multiple``
covering every message up to the highest delivery tag whose lower tags are all acknowledged too,
and single acks for the rest. RabbitMQ then handles one frame (and, for a quorum queue, one log
entry) instead of one per message; the worker writes one frame and waits for no drain per message.

An acknowledgement is only ever sent after the outcome it stands for was stored (the caller asks
for it then), so batching delays it by one loop turn and changes nothing else; an acknowledgement
that does not reach RabbitMQ (the channel closed) is redelivered and skipped as final by begin.lua.
"""

from __future__ import annotations

import asyncio
import logging

from aiormq.abc import AbstractChannel, DeliveredMessage

from aiocelery.brokers.amqp.link import CHANNEL_GONE

log = logging.getLogger("aiocelery.broker")


class Acker:
    """Tracks each channel's unacknowledged delivery tags and acknowledges in batches."""

    def __init__(self) -> None:
        self._outstanding: dict[AbstractChannel, set[int]] = {}
        """Per aiormq channel: tags delivered and not yet acknowledged or handed back."""
        self._asked: dict[AbstractChannel, list[int]] = {}
        """Per aiormq channel: tags to acknowledge at the end of this loop turn."""
        self._flushing: set[asyncio.Task[None]] = set()
        self._scheduled = False

    def delivered(self, message: DeliveredMessage) -> None:
        """``message`` arrived (its tag stays outstanding until acked or handed back)."""
        if message.delivery_tag is not None:
            self._outstanding.setdefault(message.channel, set()).add(message.delivery_tag)

    def ack(self, message: DeliveredMessage) -> None:
        """Acknowledge ``message`` after this loop turn (nothing if its channel closed meanwhile:
        RabbitMQ requeued the message then, and it comes back to be skipped as final)."""
        if message.delivery_tag is None or message.channel.is_closed:
            return
        self._asked.setdefault(message.channel, []).append(message.delivery_tag)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    async def nack(self, message: DeliveredMessage) -> None:
        """Hand ``message`` back to RabbitMQ (requeued, for any consumer), at once."""
        tags = self._outstanding.get(message.channel)
        if tags is not None and message.delivery_tag is not None:
            tags.discard(message.delivery_tag)
        if message.delivery_tag is None or message.channel.is_closed:
            return  # its channel closed: RabbitMQ requeued it already
        try:
            await message.channel.basic_nack(message.delivery_tag, requeue=True, wait=False)
        except CHANNEL_GONE as exc:  # its channel closed: RabbitMQ requeued it already
            log.debug("message %s not requeued: %s", message.delivery_tag, exc)

    def _flush(self) -> None:
        self._scheduled = False
        asked, self._asked = self._asked, {}
        for channel, tags in asked.items():
            outstanding = self._outstanding.get(channel, set())
            if channel.is_closed:
                self._outstanding.pop(channel, None)
                continue  # RabbitMQ requeued those messages when the channel closed
            upto, single = _batch(outstanding, tags)
            outstanding.difference_update(tags)
            task = asyncio.ensure_future(self._send(channel, upto, single))
            self._flushing.add(task)
            task.add_done_callback(self._flushing.discard)

    async def _send(self, channel: AbstractChannel, upto: int | None, single: list[int]) -> None:
        try:
            if upto is not None:
                await channel.basic_ack(upto, multiple=True, wait=False)
            for tag in single:
                await channel.basic_ack(tag, wait=False)
        except CHANNEL_GONE as exc:  # the channel closed: those messages come back and are skipped as final
            log.debug("acknowledgements lost with their channel: %s", exc)

    async def close(self) -> None:
        """Send what is asked for now, and wait for it."""
        if self._scheduled:
            self._flush()
        if self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)


def _batch(outstanding: set[int], asked: list[int]) -> tuple[int | None, list[int]]:
    """(the tag a ``multiple`` ack may cover, the tags to ack one by one): every outstanding tag up
    to the first one not asked for is covered."""
    wanted = set(asked)
    upto = None
    for tag in sorted(outstanding):
        if tag not in wanted:
            break
        upto = tag
    if upto is None:
        return None, sorted(wanted)
    return upto, sorted(t for t in wanted if t > upto)
