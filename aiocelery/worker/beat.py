"""The periodic scheduler: sends each periodic entry's task at its fire times.

It runs inside every worker (unless opted out) and as ``python -m aiocelery beat``; any number
of them may run at once. Each fire time becomes a task whose id is derived from the entry's name
and the fire time, so however many schedulers send it, the idempotent enqueue creates exactly
one task. Time is the broker's (Redis ``TIME``), so a scheduler with a skewed clock agrees with
the others. No lock, no leader.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from aiocelery.exceptions import AioCeleryError
from aiocelery.timing.schedule import DEFAULT_GRACE, Schedule, due_fire_times, fire_id

if TYPE_CHECKING:
    from aiocelery.app import App

log = logging.getLogger("aiocelery.beat")
NEVER_S = 3600.0
"""Longest single sleep, so a scheduler re-reads the broker's time at least hourly."""


class Scheduler:
    """Sends ``app``'s periodic entries' tasks; ``await run()`` until cancelled."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.sent = 0
        """Fire times this scheduler sent (most are duplicates another scheduler also sent)."""
        self._last: dict[str, datetime | None] = {}

    async def run(self) -> None:
        """Fire due entries, then sleep until the next fire time; forever."""
        entries = self.app.periodic_entries
        if not entries:
            return
        broker = self.app.broker
        for entry in entries:
            shared = await broker.record_fired(entry.name, 0)
            self._last[entry.name] = _from_ms(shared) if shared else None
        log.info("scheduler started with %d periodic entr%s", len(entries), "y" if len(entries) == 1 else "ies")
        while True:
            now_ms = await broker.now_ms()
            await self.tick(now_ms)
            await self._sleep(now_ms)

    async def tick(self, now_ms: int) -> None:
        """Send every entry's due fire times as of broker time ``now_ms``."""
        now = _from_ms(now_ms)
        for entry in self.app.periodic_entries:
            fires = due_fire_times(entry.schedule, self._last.get(entry.name), now, entry.missed,
                                   grace=_grace(entry.schedule, now))
            try:
                for fire in fires:
                    await self.app.send_task(entry.signature.set(task_id=fire_id(entry.name, fire)))
                    self.sent += 1
                await self.app.broker.record_fired(entry.name, now_ms)
            except (AioCeleryError, OSError) as exc:
                log.warning("periodic %s: could not send (%s); trying again next tick", entry.name, exc)
                continue
            self._last[entry.name] = now

    async def _sleep(self, now_ms: int) -> None:
        now = _from_ms(now_ms)
        soonest = min(entry.schedule.next_after(now) for entry in self.app.periodic_entries)
        delay_ms = min(int((soonest - now).total_seconds() * 1000), int(NEVER_S * 1000))
        clock = self.app.connections.clock
        await clock.wait(clock.now_ms() + delay_ms, self._never)

    @property
    def _never(self) -> asyncio.Event:
        return asyncio.Event()


def _grace(schedule: Schedule, now: datetime) -> timedelta:
    """How late a fire may be handled and still be on time: a minute, or half the schedule's gap."""
    first = schedule.next_after(now)
    return min(DEFAULT_GRACE, (schedule.next_after(first) - first) / 2)


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
