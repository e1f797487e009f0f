"""When periodic tasks fire: cron expressions, fixed intervals and the missed-fire policy.

Everything here is pure: times come in as arguments (the injected clock), nothing sleeps or
does I/O. A scheduler loop is then only::

    due = due_fire_times(schedule, last_fired, now, policy)      # decide
    for fire_time in due:                                         # do
        await task.apply_async(..., task_id=fire_id(name, fire_time))
    last_fired = now                                              # persist
    sleep until schedule.next_after(now)

Fire times are aware ``datetime``s in UTC. Naive datetimes are refused (``ValueError``): a naive
time means a different instant on every machine.

Daylight saving time (``Cron`` only; ``Every`` counts elapsed time and has none):

* a wall-clock time skipped by a spring-forward gap fires once, at the instant the gap ends
  (``30 2 * * *`` in Europe/Paris on 2024-03-31 fires at 03:00 CEST = 01:00 UTC). Every
  skipped time of the gap collapses into that one fire, together with the gap's end itself.
* a wall-clock time repeated by a fall-back fires once, at its first occurrence (the summer
  time one). So ``0 * * * *`` does not fire at the second 02:00 in Europe/Paris on 2024-10-27,
  and ``* * * * *`` pauses for the repeated hour; use ``Every`` for true intervals.
"""

from __future__ import annotations

import enum
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import NamedTuple, Protocol, runtime_checkable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""The default anchor of ``Every``: 1970-01-01 00:00 UTC."""
DEFAULT_GRACE = timedelta(seconds=60)
"""How late a fire time may be handled and still count as on time, not missed."""

_MINUTE = timedelta(minutes=1)
_TICK = timedelta(microseconds=1)
_SEARCH_YEARS = 400  # the Gregorian calendar repeats every 400 years
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH_NAMES = {name: i for i, name in enumerate(_MONTHS, 1)}
_DAY_NAMES = {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_DAYS_IN_MONTH = dict(enumerate((31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31), 1))  # February 29 exists


class _Field(NamedTuple):
    name: str
    low: int
    high: int
    names: dict[str, int]
    kind: str  # what a name would be, for messages


_FIELDS = (
    _Field("minute", 0, 59, {}, ""),
    _Field("hour", 0, 23, {}, ""),
    _Field("day-of-month", 1, 31, {}, ""),
    _Field("month", 1, 12, _MONTH_NAMES, "a month name (jan-dec)"),
    _Field("day-of-week", 0, 7, _DAY_NAMES, "a weekday name (sun-sat)"),
)


@runtime_checkable
class Schedule(Protocol):
    """Anything that knows its next fire time: ``Cron``, ``Every`` or your own."""

    def next_after(self, t: datetime) -> datetime:
        """The first fire time strictly after the aware datetime ``t``, as an aware UTC datetime."""
        ...


@dataclass(frozen=True, slots=True)
class Cron:
    """A 5-field cron schedule (``minute hour day-of-month month day-of-week``) in a time zone.

    Build it with ``Cron.parse("0 9 * * mon-fri", tz="Europe/Paris")``. The fields hold the
    sorted values each field allows; weekdays run 0 (Sunday) to 6.
    """

    expr: str
    """The expression as written (a macro such as ``@daily`` stays a macro)."""
    minutes: tuple[int, ...] = field(repr=False)
    hours: tuple[int, ...] = field(repr=False)
    days: tuple[int, ...] = field(repr=False)
    """Days of the month, 1-31."""
    months: tuple[int, ...] = field(repr=False)
    weekdays: tuple[int, ...] = field(repr=False)
    """Days of the week, 0 (Sunday) to 6; 7 in an expression is stored as 0."""
    day_or: bool = field(repr=False)
    """True when both day fields are restricted (neither starts with ``*``): a day then matches if
    EITHER matches, as crontab(5) specifies. Otherwise both must match."""
    tz: str = "UTC"
    """IANA time zone the fields are read in, e.g. ``"Europe/Paris"``."""

    def __post_init__(self) -> None:
        _zone(self.tz)
        if not self.day_or and not any(day <= _DAYS_IN_MONTH[m] for m in self.months for day in self.days):
            days, months = ",".join(map(str, self.days)), ",".join(map(str, self.months))
            raise ValueError(f"cron expression {self.expr!r} can never fire: "
                             f"day-of-month {days} does not exist in month {months}")

    @classmethod
    def parse(cls, expr: str, tz: str | None = None) -> Cron:
        """Parse ``expr``; ``tz`` is an IANA zone name (default UTC). Raises ``ValueError``.

        Each field is a comma-separated list of ``*``, ``n``, ``a-b``, ``*/step``, ``a-b/step``
        or ``a/step`` (``a`` to the field's maximum). Months accept ``jan``-``dec``, weekdays
        ``sun``-``sat``, case-insensitively; weekday 0 and 7 are both Sunday. The macros
        ``@yearly @annually @monthly @weekly @daily @midnight @hourly`` stand for their expression.
        """
        text = expr.strip()
        fields = _MACROS.get(text.lower(), text).split()
        if text.startswith("@") and text.lower() not in _MACROS:
            raise ValueError(f"unknown cron macro {text!r}; use one of {', '.join(_MACROS)}")
        if len(fields) != len(_FIELDS):
            raise ValueError(f"cron expression {expr!r} has {len(fields)} fields; expected 5: "
                             "minute hour day-of-month month day-of-week")
        values = [_parse_field(spec, raw, expr) for spec, raw in zip(_FIELDS, fields, strict=True)]
        weekdays = tuple(sorted({day % 7 for day in values[4]}))
        day_or = not fields[2].startswith("*") and not fields[4].startswith("*")
        return cls(text, values[0], values[1], values[2], values[3], weekdays, day_or, "UTC" if tz is None else tz)

    def next_after(self, t: datetime) -> datetime:
        """The first fire time strictly after the aware datetime ``t``, as an aware UTC datetime.

        The fields are matched against the wall clock of ``tz``; see the module docstring for
        what happens to times skipped or repeated by daylight saving time.
        """
        t = _utc(t, "t")
        zone = _zone(self.tz)
        wall = t.astimezone(zone).replace(tzinfo=None, fold=0, second=0, microsecond=0)
        while True:
            wall = self._next_wall(wall)
            instant = _instant(wall, zone)
            if instant > t:  # only false around a fall-back, or for the first wall minute
                return instant
            wall += _MINUTE

    def _next_wall(self, wall: datetime) -> datetime:
        """The first naive wall-clock minute at or after ``wall`` that the fields match."""
        last_year = wall.year + _SEARCH_YEARS
        while wall.year <= last_year:
            if wall.month not in self.months:
                wall = _next_month(wall, self.months)
            elif not self._day_matches(wall):
                wall = _next_day(wall)
            elif wall.hour not in self.hours:
                wall = _next_hour(wall, self.hours)
            elif wall.minute not in self.minutes:
                wall = _next_minute(wall, self.minutes)
            else:
                return wall
        raise ValueError(f"cron expression {self.expr!r} does not fire within {_SEARCH_YEARS} years")

    def _day_matches(self, day: datetime) -> bool:
        in_month = day.day in self.days
        in_week = day.isoweekday() % 7 in self.weekdays
        return (in_month or in_week) if self.day_or else (in_month and in_week)


@dataclass(frozen=True, slots=True)
class Every:
    """Fire every ``interval`` of elapsed time, at ``anchor + k * interval`` for every integer k.

    The anchor only fixes the phase (fire times exist before it too): ``Every(timedelta(hours=1),
    anchor=datetime(2024, 1, 1, 0, 30, tzinfo=UTC))`` fires at half past every hour. Elapsed time
    ignores daylight saving time: every 24 h is 08:00 or 09:00 in Paris depending on the season;
    use ``Cron`` for wall-clock times.
    """

    interval: timedelta
    """Time between fire times; must be > 0."""
    anchor: datetime = EPOCH
    """Any one fire time, aware (stored in UTC); default 1970-01-01 00:00 UTC."""

    def __post_init__(self) -> None:
        if self.interval <= timedelta(0):
            raise ValueError(f"Every interval must be > 0, got {self.interval!r}")
        object.__setattr__(self, "anchor", _utc(self.anchor, "anchor"))

    def next_after(self, t: datetime) -> datetime:
        """The first ``anchor + k * interval`` strictly after the aware datetime ``t``, in UTC."""
        periods = (_utc(t, "t") - self.anchor) // self.interval
        return self.anchor + (periods + 1) * self.interval


class MissedFirePolicy(enum.StrEnum):
    """What to run for fire times that passed while no scheduler was running (see ``due_fire_times``)."""

    ALL = "all"
    """Run every missed fire time (up to ``max_catch_up``, the most recent ones)."""
    LATEST = "latest"
    """Run missed fire times once: only the most recent one, if none is on time. The default."""
    SKIP = "skip"
    """Run none of the missed fire times; only the ones on time."""


def fire_times(schedule: Schedule, after: datetime, until: datetime, limit: int) -> list[datetime]:
    """The earliest ``limit`` fire times in ``(after, until]``, ascending, in UTC.

    When more than ``limit`` fire times fall in the window, the later ones are left out: call
    again with ``after`` set to the last one returned to page through them.
    """
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    after, until = _utc(after, "after"), _utc(until, "until")
    times: list[datetime] = []
    fire = schedule.next_after(after)
    while len(times) < limit and fire <= until:
        times.append(fire)
        fire = schedule.next_after(fire)
    return times


def due_fire_times(
    schedule: Schedule,
    last_fired: datetime | None,
    now: datetime,
    policy: MissedFirePolicy = MissedFirePolicy.LATEST,
    max_catch_up: int = 100,
    *,
    grace: timedelta = DEFAULT_GRACE,
) -> list[datetime]:
    """The fire times to enqueue now, ascending, in UTC: at most ``max_catch_up`` of them.

    ``last_fired`` is the instant up to which fire times were already handled: the ``now`` of the
    previous call (persist it after enqueueing), or the last fire time enqueued. The fire times in
    ``(last_fired, now]`` are due; those within ``grace`` of ``now`` (in ``(now - grace, now]``)
    are on time, older ones were missed (the scheduler was down or blocked). By ``policy``:

    * ``ALL``: every due fire time; when more than ``max_catch_up``, the most recent ones.
    * ``LATEST``: the on-time ones; if there are none, the single most recent missed one.
    * ``SKIP``: the on-time ones only.

    On first start (``last_fired is None``) nothing before ``now`` is run, whatever the policy:
    the result is ``[now]`` if ``now`` is exactly a fire time, else ``[]``, and the scheduler waits
    for ``schedule.next_after(now)``. A ``last_fired`` at or after ``now`` gives ``[]``.

    With ``Cron.parse("*/15 * * * *")``, ``last_fired`` 08:00 and ``now`` 09:00:10 (down an hour),
    the due fire times are 08:15, 08:30, 08:45 and 09:00; ALL returns all four, LATEST and SKIP
    return [09:00]. With ``now`` 09:05 instead, ALL still returns the four, LATEST returns
    [09:00] and SKIP returns [] (the next run is 09:15).
    """
    if max_catch_up < 1:
        raise ValueError(f"max_catch_up must be >= 1, got {max_catch_up}")
    if grace < timedelta(0):
        raise ValueError(f"grace must be >= 0, got {grace!r}")
    now = _utc(now, "now")
    if last_fired is None:
        return [now] if schedule.next_after(now - _TICK) == now else []
    last_fired = _utc(last_fired, "last_fired")
    if last_fired >= now:
        return []
    if policy is MissedFirePolicy.ALL:
        return _latest(schedule, last_fired, now, max_catch_up)
    on_time = _latest(schedule, max(last_fired, now - grace), now, max_catch_up)
    if on_time or policy is MissedFirePolicy.SKIP:
        return on_time
    return _latest(schedule, last_fired, now - grace, 1)


def fire_id(name: str, fire_time: datetime) -> str:
    """A deterministic task id for the periodic task ``name`` firing at ``fire_time``.

    ``periodic:<name>:<unix seconds>``, with ``.<microseconds>`` appended for sub-second fire
    times, so every scheduler enqueueing the same fire time creates the same task, once.
    """
    if not name:
        raise ValueError("fire_id needs a non-empty periodic task name")
    elapsed = (_utc(fire_time, "fire_time") - EPOCH) // _TICK
    seconds, micros = divmod(abs(elapsed), 1_000_000)
    sign = "-" if elapsed < 0 else ""
    return f"periodic:{name}:{sign}{seconds}" + (f".{micros:06d}" if micros else "")


def _latest(schedule: Schedule, after: datetime, until: datetime, count: int) -> list[datetime]:
    """The latest ``count`` fire times in ``(after, until]``, ascending.

    Looks back over a window that doubles until it holds ``count`` fire times or reaches
    ``after``, so a long outage costs a few dozen ``next_after`` calls, not one per missed time.
    """
    span = timedelta(seconds=1)
    while True:
        reached = span >= until - after
        found: deque[datetime] = deque(maxlen=count)
        fire = schedule.next_after(after if reached else until - span)
        while fire <= until:
            found.append(fire)
            fire = schedule.next_after(fire)
        if reached or len(found) == count:
            return list(found)
        span *= 2


def _parse_field(spec: _Field, raw: str, expr: str) -> tuple[int, ...]:
    values: set[int] = set()
    for item in raw.split(","):
        if not item:
            raise ValueError(f"cron field {spec.name!r} has an empty list item in {expr!r}")
        values.update(_parse_item(spec, item, expr))
    return tuple(sorted(values))


def _parse_item(spec: _Field, item: str, expr: str) -> range:
    base, slash, step_text = item.partition("/")
    step = _parse_step(spec, step_text, expr) if slash else 1
    if base == "*":
        low, high = spec.low, spec.high
    elif "-" in base:
        first, _, last = base.partition("-")
        low, high = _parse_value(spec, first, expr), _parse_value(spec, last, expr)
        if low > high:
            raise ValueError(f"cron field {spec.name!r} range {base} is reversed (start > end) in {expr!r}")
    else:
        low = _parse_value(spec, base, expr)
        high = spec.high if slash else low
    return range(low, high + 1, step)


def _parse_step(spec: _Field, text: str, expr: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise ValueError(f"cron field {spec.name!r} step {text!r} must be a whole number >= 1 in {expr!r}")
    return int(text)


def _parse_value(spec: _Field, text: str, expr: str) -> int:
    if text.lower() in spec.names:
        return spec.names[text.lower()]
    if not (text.isascii() and text.isdigit()):
        kind = f"a number or {spec.kind}" if spec.kind else "a number"
        raise ValueError(f"cron field {spec.name!r} value {text!r} is not {kind} in {expr!r}")
    value = int(text)
    if not spec.low <= value <= spec.high:
        raise ValueError(f"cron field {spec.name!r} value {value} is out of range {spec.low}-{spec.high} in {expr!r}")
    return value


def _next_month(wall: datetime, months: tuple[int, ...]) -> datetime:
    i = bisect_right(months, wall.month)
    if i < len(months):
        return datetime(wall.year, months[i], 1)
    return datetime(wall.year + 1, months[0], 1)


def _next_day(wall: datetime) -> datetime:
    return datetime(wall.year, wall.month, wall.day) + timedelta(days=1)


def _next_hour(wall: datetime, hours: tuple[int, ...]) -> datetime:
    i = bisect_right(hours, wall.hour)
    return wall.replace(hour=hours[i], minute=0) if i < len(hours) else _next_day(wall)


def _next_minute(wall: datetime, minutes: tuple[int, ...]) -> datetime:
    i = bisect_right(minutes, wall.minute)
    return wall.replace(minute=minutes[i]) if i < len(minutes) else wall.replace(minute=0) + timedelta(hours=1)


def _instant(wall: datetime, zone: tzinfo) -> datetime:
    """The UTC instant a naive wall-clock time fires at: its first occurrence, or the gap's end."""
    before = _offset(wall.replace(tzinfo=zone, fold=0))
    after = _offset(wall.replace(tzinfo=zone, fold=1))
    if after > before:  # spring forward: ``wall`` does not exist
        return _gap_end(wall, zone, before, after)
    return (wall - before).replace(tzinfo=UTC)


def _gap_end(wall: datetime, zone: tzinfo, before: timedelta, after: timedelta) -> datetime:
    """The first instant whose wall clock is past ``wall``: the end of the gap holding it."""
    second = timedelta(seconds=1)
    low = ((wall - after).replace(tzinfo=UTC) - EPOCH) // second  # still before the gap
    high = ((wall - before).replace(tzinfo=UTC) - EPOCH) // second  # already past it
    while high - low > 1:  # transitions fall on whole seconds
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).replace(tzinfo=None) > wall:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def _offset(aware: datetime) -> timedelta:
    offset = aware.utcoffset()
    assert offset is not None
    return offset


def _utc(t: datetime, name: str) -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {t!r}")
    return t.astimezone(UTC)


def _zone(key: str) -> tzinfo:
    if key == "UTC":
        return UTC
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {key!r}; use an IANA name such as 'Europe/Paris'") from None
