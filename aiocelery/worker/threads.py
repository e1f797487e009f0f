"""A bounded pool of daemon threads for plain ``def`` tasks.

Daemon threads, so a task that never returns cannot keep a stopped worker alive. A call whose
awaiting coroutine is cancelled while its thread runs it is *abandoned*: the thread runs on, its
result is dropped, it is counted, and the pool may start one more thread until it comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiocelery.worker.soft_limit import raise_in_thread

T = TypeVar("T")


@dataclass(eq=False, slots=True)
class _Job:
    fn: Callable[[], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    context: contextvars.Context = field(default_factory=contextvars.copy_context)
    started: bool = False
    abandoned: bool = False
    finished: bool = False
    thread_id: int = 0


class DaemonThreadPool:
    """Runs callables in at most ``size`` daemon threads, each in a copy of the caller's context."""

    def __init__(self, size: int, name: str = "aiocelery-task") -> None:
        if size < 1:
            raise ValueError(f"thread pool size must be >= 1, got {size}")
        self._size = size
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._stuck = 0
        self._lock = threading.Lock()
        self.abandoned = 0
        """Calls whose caller gave up (cancelled) while a thread was still running them."""

    @property
    def stuck(self) -> int:
        """Threads still running an abandoned call right now."""
        return self._stuck

    async def run(self, fn: Callable[[], T], soft_limit_s: float | None = None) -> T:
        """Run ``fn()`` in a pool thread with the current contextvars; cancellation abandons it.

        With ``soft_limit_s``, SoftTimeLimitExceeded is raised in the thread when it runs that long.
        """
        loop = asyncio.get_running_loop()
        job = _Job(fn, loop, loop.create_future())
        self._jobs.put(job)
        self._ensure_thread()
        timer = loop.call_later(soft_limit_s, self._soft_limit, job) if soft_limit_s is not None else None
        try:
            result: T = await job.future
            return result
        except asyncio.CancelledError:
            with self._lock:
                if job.started and not job.abandoned:
                    job.abandoned = True
                    self.abandoned += 1
                    self._stuck += 1
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def _soft_limit(self, job: _Job) -> None:
        with self._lock:
            if job.started and not job.finished and job.thread_id:
                raise_in_thread(job.thread_id)

    def _ensure_thread(self) -> None:
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            if self._idle > 0 or len(self._threads) >= self._size + self._stuck:
                return
            thread = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True)
            self._threads.append(thread)
        thread.start()

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            job = self._jobs.get()
            with self._lock:
                self._idle -= 1
                if job is not None:
                    job.started = not job.future.cancelled()
                    job.thread_id = threading.get_ident()
            if job is None:
                return
            if job.started:
                self._execute(job)

    def _execute(self, job: _Job) -> None:
        try:
            result: Any = job.context.run(job.fn)
        except BaseException as exc:
            outcome: tuple[Any, BaseException | None] = (None, exc)
        else:
            outcome = (result, None)
        with self._lock:
            job.finished = True
            if job.abandoned:
                self._stuck -= 1
                return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            job.loop.call_soon_threadsafe(_settle, job.future, *outcome)

    def shutdown(self) -> None:
        """Ask threads to exit once idle; daemon threads never block interpreter exit."""
        with self._lock:
            count = len(self._threads)
        for _ in range(count):
            self._jobs.put(None)


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
