"""Notices a blocked event loop from a thread and names the task that blocks it, with its stack."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable

log = logging.getLogger("aiocelery.worker")


class LoopWatchdog:
    """Every ``threshold_s / 2`` the thread pings the loop; an unanswered ping past the threshold
    logs a warning naming the blocking task (``describe``) and the loop thread's stack."""

    def __init__(self, loop: asyncio.AbstractEventLoop, threshold_s: float,
                 describe: Callable[[asyncio.Task[object] | None], str]) -> None:
        self._loop = loop
        self._threshold = threshold_s
        self._describe = describe
        self._loop_thread = threading.get_ident()
        self._sent_at: float | None = None
        self._warned = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="aiocelery-watchdog", daemon=True)
        self.blocked = 0
        """How many times the loop was found blocked."""

    def start(self) -> None:
        """Start watching (call from the loop's thread)."""
        self._loop_thread = threading.get_ident()
        self._thread.start()

    def stop(self) -> None:
        """Stop watching."""
        self._stop.set()
        self._thread.join(timeout=self._threshold + 1)

    def _run(self) -> None:
        while not self._stop.wait(self._threshold / 2):
            now = time.monotonic()
            if self._sent_at is None:
                self._sent_at = now
                try:
                    self._loop.call_soon_threadsafe(self._answer)
                except RuntimeError:
                    return  # loop closed
            elif now - self._sent_at > self._threshold and not self._warned:
                self._warned = True
                self.blocked += 1
                self._warn(now - self._sent_at)

    def _warn(self, seconds: float) -> None:
        task = asyncio.current_task(self._loop)
        frame = sys._current_frames().get(self._loop_thread)
        stack = "".join(traceback.format_stack(frame)) if frame is not None else "(no stack)"
        log.warning("event loop blocked for %.1f s by %s; an async task must not block (use await, or a "
                    "plain def task which runs in a thread). Stack:\n%s", seconds, self._describe(task), stack)

    def _answer(self) -> None:
        if self._warned and self._sent_at is not None:
            log.warning("event loop unblocked after %.1f s", time.monotonic() - self._sent_at)
        self._sent_at = None
        self._warned = False
