"""Soft time limits: raise ``SoftTimeLimitExceeded`` *inside* a running task, async or thread.

Async: the task's coroutine is driven step by step; at the limit the asyncio task is cancelled
with a marker, and the driver turns that one cancellation into ``SoftTimeLimitExceeded`` thrown
into the coroutine where it waits (the cancellation is withdrawn with ``uncancel()``), so the
task can clean up and even finish. Threads: the exception is set asynchronously on the thread
(``PyThreadState_SetAsyncExc``); it is raised at the thread's next Python instruction, so a long
C call (``time.sleep(60)``) finishes first.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any, TypeVar

from aiocelery.exceptions import SoftTimeLimitExceeded

T = TypeVar("T")
_MARK = "aiocelery soft time limit"


async def run_with_soft_limit(coro: Coroutine[Any, Any, T], limit_s: float, what: str) -> T:
    """Await ``coro``; after ``limit_s`` seconds raise SoftTimeLimitExceeded inside it."""
    task = asyncio.current_task()
    assert task is not None
    state = {"fired": False}

    def fire() -> None:
        state["fired"] = True
        task.cancel(_MARK)

    handle = asyncio.get_running_loop().call_later(limit_s, fire)
    try:
        return await _drive(coro, lambda: _take_soft(state, task), f"{what} reached its soft time limit of "
                            f"{limit_s:g} s")
    finally:
        handle.cancel()


def _take_soft(state: dict[str, bool], task: asyncio.Task[Any]) -> bool:
    if not state["fired"]:
        return False
    state["fired"] = False
    task.uncancel()
    return True


@types.coroutine
def _drive(coro: Coroutine[Any, Any, T], take_soft: Callable[[], bool], message: str) -> Generator[Any, Any, T]:
    send: Any = None
    throw: BaseException | None = None
    while True:
        try:
            if throw is not None:
                exc, throw = throw, None
                yielded = coro.throw(exc)
            else:
                yielded = coro.send(send)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        try:
            send = yield yielded
        except asyncio.CancelledError as exc:
            send = None
            throw = SoftTimeLimitExceeded(message) if take_soft() else exc
        except BaseException as exc:
            send, throw = None, exc


def raise_in_thread(thread_id: int) -> bool:
    """Make thread ``thread_id`` raise SoftTimeLimitExceeded at its next Python instruction."""
    import ctypes  # here: only a thread task past its soft limit needs it (0.4 MB per process)

    exc = ctypes.py_object(SoftTimeLimitExceeded)
    return int(ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), exc)) == 1
