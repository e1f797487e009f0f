"""The one waiting loop both backends share: subscribe, read, sleep until woken or re-check."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiocelery.brokers.base import TRANSIENT_ERRORS
from aiocelery.exceptions import ResultLost, ResultNotFound, ResultTimeout
from aiocelery.timing.reconnect import ReconnectDelay
from aiocelery.wire.records import TaskRecord

Reader = Callable[[str], Awaitable[TaskRecord | None]]
Subscribe = Callable[[Callable[[bytes | None], None]], Awaitable[None]]
Unsubscribe = Callable[[Callable[[bytes | None], None]], Awaitable[None]]

SAFETY_FIRST_S = 1.0
SAFETY_MAX_S = 30.0


async def wait_for_record(
    task_id: str,
    timeout: float | None,
    read: Reader,
    subscribe: Subscribe,
    unsubscribe: Unsubscribe,
    *,
    read_first: bool = True,
    carried: Callable[[str, bytes], TaskRecord | None] | None = None,
) -> TaskRecord:
    """Return ``task_id``'s record once final, waking on notification; a slow re-check is the net.

    One read first (a finished task returns at once, even with ``timeout=0``); otherwise it
    subscribes, waits for the confirmation and reads again, so a result stored in between is
    never missed. Without ``read_first`` (a task this process just sent) it subscribes at once.
    ``carried`` decodes a notification that carries the final record itself (no read then).
    """
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    woke = asyncio.Event()
    delivered: list[TaskRecord] = []

    def listener(data: bytes | None) -> None:
        if data and carried is not None:
            record = carried(task_id, data)
            if record is not None and record.ready:
                delivered.append(record)
        woke.set()

    seen = ["unknown: the result backend did not answer"]  # the last state read, for the timeout's message
    subscribed = False
    try:
        if read_first or (timeout is not None and timeout <= 0):  # timeout 0: one look, no wait
            first = await _read(read, task_id, deadline, loop)  # a finished task returns at once
            if first is None:
                raise ResultNotFound(task_id)
            if first.ready:
                return first
            seen[0] = first.state
        await _bounded(subscribe(listener), deadline, loop)
        subscribed = True
        return await _until_final(task_id, read, woke, deadline, loop, seen, delivered)
    except TimeoutError:
        assert timeout is not None
        raise ResultTimeout(task_id, timeout, seen[0]) from None
    finally:
        if subscribed:
            await asyncio.shield(unsubscribe(listener))


async def _until_final(task_id: str, read: Reader, woke: asyncio.Event, deadline: float | None,
                       loop: asyncio.AbstractEventLoop, seen: list[str], delivered: list[TaskRecord]) -> TaskRecord:
    """Read, then sleep until woken or the safety re-check (1 s doubling to 30 s); repeat. A
    notification that carried the final record ends it without a read."""
    safety = SAFETY_FIRST_S
    while True:
        if delivered:
            return delivered[0]
        woke.clear()
        record = await _read(read, task_id, deadline, loop)
        if record is None:
            raise ResultLost(task_id)
        if record.ready:
            return record
        seen[0] = record.state
        if delivered:  # arrived while reading
            return delivered[0]
        try:
            await _bounded(woke.wait(), deadline, loop, cap=safety)
        except TimeoutError:
            if deadline is not None and loop.time() >= deadline:
                raise
            safety = min(safety * 2, SAFETY_MAX_S)


async def _read(read: Reader, task_id: str, deadline: float | None,
                loop: asyncio.AbstractEventLoop) -> TaskRecord | None:
    """``read``, riding out a broker outage until the deadline (TimeoutError then)."""
    backoff = ReconnectDelay(base=0.1, cap=2.0)
    while True:
        try:
            return await read(task_id)
        except TRANSIENT_ERRORS:
            delay = backoff.next_delay()
            if deadline is not None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise TimeoutError from None
                delay = min(delay, remaining)
            await asyncio.sleep(delay)


async def _bounded(
    aw: Awaitable[object], deadline: float | None, loop: asyncio.AbstractEventLoop, cap: float | None = None
) -> None:
    limit = cap
    if deadline is not None:
        remaining = max(0.0, deadline - loop.time())
        limit = remaining if limit is None else min(limit, remaining)
    await asyncio.wait_for(aw, limit)
