"""The one waiting loop both backends share: subscribe, read, sleep until woken or re-check."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ..exceptions import ResultLost, ResultNotFound, ResultTimeout
from ..records import TaskRecord

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
) -> TaskRecord:
    """Return ``task_id``'s record once final, waking on notification; a slow re-check is the net.

    One read first (a finished task returns at once, even with ``timeout=0``); otherwise it
    subscribes, waits for the confirmation and reads again, so a result stored in between is
    never missed.
    """
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    woke = asyncio.Event()

    def listener(_data: bytes | None) -> None:
        woke.set()

    first = await read(task_id)  # a finished task returns at once, whatever the timeout
    if first is None:
        raise ResultNotFound(task_id)
    if first.ready:
        return first
    state = first.state
    try:
        await _bounded(subscribe(listener), deadline, loop)
        seen = True
        safety = SAFETY_FIRST_S
        while True:
            woke.clear()
            record = await read(task_id)
            if record is None:
                raise ResultLost(task_id) if seen else ResultNotFound(task_id)
            if record.ready:
                return record
            seen, state = True, record.state
            try:
                await _bounded(woke.wait(), deadline, loop, cap=safety)
            except TimeoutError:
                if deadline is not None and loop.time() >= deadline:
                    raise
                safety = min(safety * 2, SAFETY_MAX_S)
    except TimeoutError:
        assert timeout is not None
        raise ResultTimeout(task_id, timeout, state) from None
    finally:
        await asyncio.shield(unsubscribe(listener))


async def _bounded(
    aw: Awaitable[object], deadline: float | None, loop: asyncio.AbstractEventLoop, cap: float | None = None
) -> None:
    limit = cap
    if deadline is not None:
        remaining = max(0.0, deadline - loop.time())
        limit = remaining if limit is None else min(limit, remaining)
    await asyncio.wait_for(aw, limit)
