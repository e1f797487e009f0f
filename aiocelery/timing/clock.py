"""Clocks: the system clock, and a virtual one that tests move by hand (memory:// only).

With ``VirtualClock`` countdowns, retries and periodic fire times happen as soon as a test calls
``clock.advance(seconds)``: nothing waits in real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Protocol


class Clock(Protocol):
    """Now, and waiting until a time or an event."""

    def now_ms(self) -> int:
        """Unix time in ms."""
        ...

    async def wait(self, until_ms: int | None, wake: asyncio.Event) -> None:
        """Return at ``until_ms`` (None: never by time) or as soon as ``wake`` is set."""
        ...


class SystemClock:
    """Wall-clock time; waits in real time."""

    def now_ms(self) -> int:
        """``time.time()`` in ms."""
        return int(time.time() * 1000)

    async def wait(self, until_ms: int | None, wake: asyncio.Event) -> None:
        """Sleep until ``until_ms`` or ``wake``."""
        timeout = None if until_ms is None else max(0.0, (until_ms - self.now_ms()) / 1000)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout)


class VirtualClock:
    """A clock that only moves when told to: ``clock.advance(60)`` fires a minute of timers."""

    def __init__(self, start_ms: int | None = None) -> None:
        self._now = int(time.time() * 1000) if start_ms is None else start_ms
        self._moved = asyncio.Event()

    def now_ms(self) -> int:
        """The virtual time in ms."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward, waking everything waiting for a time now passed."""
        self._now += int(seconds * 1000)
        self._moved.set()
        self._moved = asyncio.Event()

    async def wait(self, until_ms: int | None, wake: asyncio.Event) -> None:
        """Return when ``wake`` is set or virtual time reaches ``until_ms``."""
        while until_ms is None or self._now < until_ms:
            moved = asyncio.ensure_future(self._moved.wait())
            woken = asyncio.ensure_future(wake.wait())
            try:
                await asyncio.wait({moved, woken}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                moved.cancel()
                woken.cancel()
            if wake.is_set():
                return
