"""Periodic task entries: a schedule, what to send, and what to do about missed fire times."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from aiocelery.tasks.signature import Signature
from aiocelery.timing.schedule import Cron, Every, MissedFirePolicy, Schedule


@dataclass(frozen=True, slots=True)
class PeriodicEntry:
    """Send ``signature`` at every fire time of ``schedule``; ``name`` identifies the entry."""

    name: str
    schedule: Schedule
    signature: Signature
    missed: MissedFirePolicy = MissedFirePolicy.LATEST


ScheduleSpec = str | timedelta | Schedule
"""A cron expression, an interval, or any Schedule."""


def make_schedule(spec: ScheduleSpec | None, every: timedelta | None, tz: str | None) -> Schedule:
    """The Schedule for ``@app.periodic("*/5 * * * *")`` or ``@app.periodic(every=timedelta(...))``."""
    if (spec is None) == (every is None):
        raise TypeError("give a cron expression (or Schedule) or every=timedelta(...), not both or neither")
    if every is not None or isinstance(spec, timedelta):
        interval = every if every is not None else spec
        assert isinstance(interval, timedelta)
        return Every(interval)
    if isinstance(spec, str):
        return Cron.parse(spec, tz)
    if isinstance(spec, Schedule):
        return spec
    raise TypeError(f"a periodic schedule is a cron string, a timedelta or a Schedule, got {spec!r}")


def make_entry(name: str, schedule: Schedule, signature: Signature, missed: MissedFirePolicy | str) -> PeriodicEntry:
    """A checked entry; ``missed`` is "latest" (default), "all" or "skip"."""
    if not name or any(c in name for c in "{}: "):
        raise ValueError(f"periodic entry name {name!r} must be non-empty without '{{', '}}', ':' or spaces")
    try:
        policy = MissedFirePolicy(missed)
    except ValueError:
        choices = ", ".join(p.value for p in MissedFirePolicy)
        raise ValueError(f"missed must be one of {choices}, got {missed!r}") from None
    return PeriodicEntry(name, schedule, signature, policy)
