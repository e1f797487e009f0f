"""Schedules: cron parsing, next fire times (DST included), intervals and the missed-fire policy. Pure, no I/O."""

from __future__ import annotations

import dataclasses
import random
import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from zoneinfo import ZoneInfo

import pytest

from aiocelery.timing.schedule import (
    EPOCH,
    Cron,
    Every,
    MissedFirePolicy,
    Schedule,
    due_fire_times,
    fire_id,
    fire_times,
)

MINUTE = timedelta(minutes=1)
PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
ALL_MINUTES = tuple(range(60))
ALL_HOURS = tuple(range(24))
ALL_DAYS = tuple(range(1, 32))
ALL_MONTHS = tuple(range(1, 13))
ALL_WEEKDAYS = tuple(range(7))


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    """An aware UTC datetime."""
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def fields(cron: Cron) -> tuple[tuple[int, ...], ...]:
    """The five parsed fields."""
    return (cron.minutes, cron.hours, cron.days, cron.months, cron.weekdays)


def series(expr: str, tz: str | None, after: datetime, count: int) -> list[datetime]:
    """The first ``count`` fire times after ``after``."""
    return fire_times(Cron.parse(expr, tz), after, after + timedelta(days=366 * 20), count)


# --- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("expr", "expected"), [
    ("* * * * *", (ALL_MINUTES, ALL_HOURS, ALL_DAYS, ALL_MONTHS, ALL_WEEKDAYS)),
    ("5 4 3 2 1", ((5,), (4,), (3,), (2,), (1,))),
    ("0,15,45 1,2 1,31 6,12 0,3", ((0, 15, 45), (1, 2), (1, 31), (6, 12), (0, 3))),
    ("10-15 9-17 1-7 3-5 1-5", (tuple(range(10, 16)), tuple(range(9, 18)), tuple(range(1, 8)), (3, 4, 5),
                                (1, 2, 3, 4, 5))),
    ("*/15 */6 */10 */4 */2", ((0, 15, 30, 45), (0, 6, 12, 18), (1, 11, 21, 31), (1, 5, 9), (0, 2, 4, 6))),
    ("10-40/10 9-17/4 5-20/5 2-12/5 1-5/2", ((10, 20, 30, 40), (9, 13, 17), (5, 10, 15, 20), (2, 7, 12),
                                            (1, 3, 5))),
    ("5/20 3/10 25/3 10/1 5/1", ((5, 25, 45), (3, 13, 23), (25, 28, 31), (10, 11, 12), (0, 5, 6))),
    ("1,5-7,*/20 0 1 jan,mar-may mon-fri", ((0, 1, 5, 6, 7, 20, 40), (0,), (1,), (1, 3, 4, 5), (1, 2, 3, 4, 5))),
    ("0 0 1 JAN-DEC/3 SUN", ((0,), (0,), (1,), (1, 4, 7, 10), (0,))),
    ("0 0 1 Feb sat,Sun", ((0,), (0,), (1,), (2,), (0, 6))),
    ("0 0 1 1 7", ((0,), (0,), (1,), (1,), (0,))),
    ("0 0 1 1 0,7", ((0,), (0,), (1,), (1,), (0,))),
    ("0 0 1 1 5-7", ((0,), (0,), (1,), (1,), (0, 5, 6))),
    ("0 0 1 1 fri-sat", ((0,), (0,), (1,), (1,), (5, 6))),
    ("59 23 31 12 6", ((59,), (23,), (31,), (12,), (6,))),
    ("*/90 * * * *", ((0,), ALL_HOURS, ALL_DAYS, ALL_MONTHS, ALL_WEEKDAYS)),
    ("  0\t9  *  *\t* ", ((0,), (9,), ALL_DAYS, ALL_MONTHS, ALL_WEEKDAYS)),
])
def test_parse_every_syntax(expr: str, expected: tuple[tuple[int, ...], ...]) -> None:
    assert fields(Cron.parse(expr)) == expected


@pytest.mark.parametrize(("macro", "expansion"), [
    ("@yearly", "0 0 1 1 *"), ("@annually", "0 0 1 1 *"), ("@monthly", "0 0 1 * *"), ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"), ("@midnight", "0 0 * * *"), ("@hourly", "0 * * * *"), ("@DAILY", "0 0 * * *"),
])
def test_macros_expand(macro: str, expansion: str) -> None:
    cron = Cron.parse(macro)
    assert fields(cron) == fields(Cron.parse(expansion))
    assert cron.day_or is False
    assert cron.expr == macro


@pytest.mark.parametrize(("expr", "day_or"), [
    ("0 0 13 * fri", True),     # both restricted: either matches
    ("0 0 1-7 * 1", True),
    ("0 0 * * fri", False),     # day-of-month is *
    ("0 0 13 * *", False),      # day-of-week is *
    ("0 0 */2 * fri", False),   # starts with *: unrestricted for the rule, as in crontab(5)
    ("0 0 1 * */2", False),
    ("0 0 1,15 * 0-7", True),   # every weekday, but written without *
])
def test_day_or_follows_crontab5(expr: str, day_or: bool) -> None:
    assert Cron.parse(expr).day_or is day_or


@pytest.mark.parametrize(("expr", "message"), [
    ("0 24 * * *", "cron field 'hour' value 24 is out of range 0-23 in '0 24 * * *'"),
    ("60 * * * *", "cron field 'minute' value 60 is out of range 0-59 in '60 * * * *'"),
    ("* * 0 * *", "cron field 'day-of-month' value 0 is out of range 1-31 in '* * 0 * *'"),
    ("* * 32 * *", "cron field 'day-of-month' value 32 is out of range 1-31 in '* * 32 * *'"),
    ("* * * 13 *", "cron field 'month' value 13 is out of range 1-12 in '* * * 13 *'"),
    ("* * * 0 *", "cron field 'month' value 0 is out of range 1-12 in '* * * 0 *'"),
    ("* * * * 8", "cron field 'day-of-week' value 8 is out of range 0-7 in '* * * * 8'"),
    ("1-99 * * * *", "cron field 'minute' value 99 is out of range 0-59 in '1-99 * * * *'"),
    ("x * * * *", "cron field 'minute' value 'x' is not a number in 'x * * * *'"),
    ("-1 * * * *", "cron field 'minute' value '' is not a number in '-1 * * * *'"),
    ("* mon * * *", "cron field 'hour' value 'mon' is not a number in '* mon * * *'"),
    ("* * * foo *", "cron field 'month' value 'foo' is not a number or a month name (jan-dec) in '* * * foo *'"),
    ("* * * * funday", "cron field 'day-of-week' value 'funday' is not a number or a weekday name (sun-sat) "
                       "in '* * * * funday'"),
    ("* * * mon *", "cron field 'month' value 'mon' is not a number or a month name (jan-dec) in '* * * mon *'"),
    ("* * * * jan", "cron field 'day-of-week' value 'jan' is not a number or a weekday name (sun-sat) "
                    "in '* * * * jan'"),
    ("\uff15 * * * *", "cron field 'minute' value '\uff15' is not a number in '\uff15 * * * *'"),
    ("*/0 * * * *", "cron field 'minute' step '0' must be a whole number >= 1 in '*/0 * * * *'"),
    ("* */x * * *", "cron field 'hour' step 'x' must be a whole number >= 1 in '* */x * * *'"),
    ("* */ * * *", "cron field 'hour' step '' must be a whole number >= 1 in '* */ * * *'"),
    ("*/5/2 * * * *", "cron field 'minute' step '5/2' must be a whole number >= 1 in '*/5/2 * * * *'"),
    ("5-3 * * * *", "cron field 'minute' range 5-3 is reversed (start > end) in '5-3 * * * *'"),
    ("* * * * fri-mon", "cron field 'day-of-week' range fri-mon is reversed (start > end) in '* * * * fri-mon'"),
    ("1,,2 * * * *", "cron field 'minute' has an empty list item in '1,,2 * * * *'"),
    ("* * * * 1,", "cron field 'day-of-week' has an empty list item in '* * * * 1,'"),
    ("* * * *", "cron expression '* * * *' has 4 fields; expected 5: minute hour day-of-month month day-of-week"),
    ("* * * * * *", "cron expression '* * * * * *' has 6 fields; expected 5: minute hour day-of-month month "
                    "day-of-week"),
    ("", "cron expression '' has 0 fields; expected 5: minute hour day-of-month month day-of-week"),
    ("@reboot", "unknown cron macro '@reboot'; use one of @yearly, @annually, @monthly, @weekly, @daily, "
                "@midnight, @hourly"),
    ("0 0 30 2 *", "cron expression '0 0 30 2 *' can never fire: day-of-month 30 does not exist in month 2"),
    ("0 0 31 4,6,9,11 *", "cron expression '0 0 31 4,6,9,11 *' can never fire: day-of-month 31 does not exist "
                          "in month 4,6,9,11"),
])
def test_parse_errors_name_the_field_and_value(expr: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        Cron.parse(expr)
    assert str(info.value) == message


def test_impossible_days_are_fine_when_the_weekday_can_match() -> None:
    cron = Cron.parse("0 0 30 2 mon")  # both restricted: every Monday of February
    assert cron.next_after(utc(2024, 1, 1)) == utc(2024, 2, 5)
    assert Cron.parse("0 0 29 2 *").days == (29,)


@pytest.mark.parametrize("tz", ["Mars/Olympus_Mons", "../etc/passwd", "", "/abs"])
def test_unknown_time_zone(tz: str) -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        Cron.parse("* * * * *", tz=tz)


def test_time_zone_default_repr_and_frozen() -> None:
    assert Cron.parse("0 9 * * *").tz == "UTC"
    assert Cron.parse("0 9 * * *", None).tz == "UTC"
    cron = Cron.parse(" 0 9 * * 1-5 ", tz="Europe/Paris")
    assert repr(cron) == "Cron(expr='0 9 * * 1-5', tz='Europe/Paris')"
    assert cron == Cron.parse("0 9 * * 1-5", "Europe/Paris")
    assert hash(cron) == hash(Cron.parse("0 9 * * 1-5", "Europe/Paris"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cron.tz = "UTC"  # type: ignore[misc]


# --- next_after in UTC --------------------------------------------------------------------------


@pytest.mark.parametrize(("expr", "after", "expected"), [
    ("* * * * *", utc(2024, 5, 1, 10, 0), utc(2024, 5, 1, 10, 1)),
    ("* * * * *", utc(2024, 5, 1, 10, 0, 30), utc(2024, 5, 1, 10, 1)),
    ("* * * * *", utc(2024, 5, 1, 10, 0) - timedelta(microseconds=1), utc(2024, 5, 1, 10, 0)),
    ("0 * * * *", utc(2024, 5, 1, 10, 0), utc(2024, 5, 1, 11, 0)),
    ("0 * * * *", utc(2024, 5, 1, 23, 0), utc(2024, 5, 2, 0, 0)),
    ("30 9 * * *", utc(2024, 5, 1, 9, 29, 59), utc(2024, 5, 1, 9, 30)),
    ("30 9 * * *", utc(2024, 5, 1, 9, 30), utc(2024, 5, 2, 9, 30)),
    ("0 0 1 * *", utc(2024, 1, 31, 12), utc(2024, 2, 1)),
    ("0 0 31 * *", utc(2024, 4, 1), utc(2024, 5, 31)),
    ("0 0 31 * *", utc(2024, 5, 31), utc(2024, 7, 31)),
    ("0 0 30 * *", utc(2024, 1, 31), utc(2024, 3, 30)),
    ("0 0 1 1 *", utc(2024, 12, 31, 23, 59), utc(2025, 1, 1)),
    ("59 23 31 12 *", utc(2024, 12, 31, 23, 59), utc(2025, 12, 31, 23, 59)),
    ("0 0 * * 1", utc(2024, 1, 3), utc(2024, 1, 8)),
    ("0 0 * * sun", utc(2024, 1, 6, 23, 59), utc(2024, 1, 7)),
    ("0 0 * * 7", utc(2024, 1, 6, 23, 59), utc(2024, 1, 7)),
    ("*/20 9-17/4 * * *", utc(2024, 5, 1, 9, 40), utc(2024, 5, 1, 13, 0)),
    ("*/20 9-17/4 * * *", utc(2024, 5, 1, 17, 40), utc(2024, 5, 2, 9, 0)),
    ("0 12 * 2 *", utc(2023, 2, 28, 12), utc(2024, 2, 1, 12)),
    ("0 0 29 2 *", utc(2024, 3, 1), utc(2028, 2, 29)),
    ("0 0 29 2 *", utc(2023, 1, 1), utc(2024, 2, 29)),
    ("0 0 29 2 *", utc(2096, 3, 1), utc(2104, 2, 29)),   # 2100 is not a leap year
    ("0 0 29 2 *", utc(1999, 3, 1), utc(2000, 2, 29)),   # 2000 is
    ("0 0 29 2 1", utc(2024, 2, 27), utc(2024, 2, 29)),  # OR: Feb 29 (a Thursday) before the next Monday
    ("0 0 1 1 mon", utc(2024, 1, 1), utc(2024, 1, 8)),   # OR
    ("0 0 */2 * fri", utc(2024, 1, 6), utc(2024, 1, 19)),  # AND: odd days that are Fridays (12th is even)
    ("0 0 * * mon", utc(2024, 1, 1), utc(2024, 1, 8)),
    ("@yearly", utc(2024, 6, 1), utc(2025, 1, 1)),
    ("@monthly", utc(2024, 12, 15), utc(2025, 1, 1)),
    ("@weekly", utc(2024, 1, 1), utc(2024, 1, 7)),
    ("@hourly", utc(2024, 1, 1, 0, 0, 1), utc(2024, 1, 1, 1)),
])
def test_next_after_utc(expr: str, after: datetime, expected: datetime) -> None:
    fire = Cron.parse(expr).next_after(after)
    assert fire == expected
    assert fire.tzinfo is UTC


def test_dom_dow_or_rule_sequence() -> None:
    # January 2024: the 1st is a Monday; Fridays are 5, 12, 19, 26; the 13th is a Saturday.
    days = [fire.day for fire in series("0 0 13 * fri", None, utc(2024, 1, 1), 6)]
    assert days == [5, 12, 13, 19, 26, 2]
    and_days = [fire.date() for fire in series("0 0 13 * *", None, utc(2024, 1, 1), 3)]
    assert and_days == [date(2024, 1, 13), date(2024, 2, 13), date(2024, 3, 13)]


def test_leap_day_series_and_speed() -> None:
    years = [fire.year for fire in series("0 0 29 2 *", None, utc(2088, 1, 1), 4)]
    assert years == [2088, 2092, 2096, 2104]
    cron = Cron.parse("0 0 29 2 *")
    start = time.perf_counter()
    for _ in range(10):
        assert cron.next_after(utc(2096, 3, 1)) == utc(2104, 2, 29)
    assert (time.perf_counter() - start) / 10 < 0.01


def test_rare_and_schedule_far_away() -> None:
    # February 29 that is also a Sunday ("*/7" starts with *, so both must match): 2032, then 2060.
    cron = Cron.parse("0 0 29 2 */7")
    assert cron.next_after(utc(2024, 1, 1)) == utc(2032, 2, 29)
    assert cron.next_after(utc(2032, 3, 1)) == utc(2060, 2, 29)


def test_next_after_accepts_any_zone_and_refuses_naive() -> None:
    cron = Cron.parse("0 9 * * *")
    tokyo = datetime(2024, 5, 1, 17, 59, tzinfo=ZoneInfo("Asia/Tokyo"))  # 08:59 UTC
    assert cron.next_after(tokyo) == utc(2024, 5, 1, 9)
    with pytest.raises(ValueError, match="t must be a timezone-aware datetime"):
        cron.next_after(datetime(2024, 5, 1))


def _reference_next_utc(cron: Cron, t: datetime) -> datetime:
    """Day by day, then every listed hour and minute: slow, obvious, independent of the module."""
    day = t.date()
    for _ in range(366 * 60):
        if _day_matches(cron, day):
            for hour in cron.hours:
                for minute in cron.minutes:
                    candidate = datetime.combine(day, clock_time(hour, minute), UTC)
                    if candidate > t:
                        return candidate
        day += timedelta(days=1)
    raise AssertionError(f"{cron} does not fire within 60 years of {t}")


def _day_matches(cron: Cron, day: date) -> bool:
    if day.month not in cron.months:
        return False
    in_month, in_week = day.day in cron.days, day.isoweekday() % 7 in cron.weekdays
    return (in_month or in_week) if cron.day_or else (in_month and in_week)


def _wall_matches(cron: Cron, wall: datetime) -> bool:
    return _day_matches(cron, wall.date()) and wall.hour in cron.hours and wall.minute in cron.minutes


def _random_field(rng: random.Random, low: int, high: int, names: list[str]) -> str:
    a, b = sorted(rng.sample(range(low, high + 1), 2))
    choices = ["*", f"{a}", f"{a}-{b}", f"{a},{b}", f"*/{rng.randint(1, 9)}", f"{a}-{b}/{rng.randint(1, 4)}",
               f"{a}/{rng.randint(2, 9)}", f"{a},{b},*/{rng.randint(5, 20)}"]
    if names:
        choices += [names[a - low], f"{names[a - low]}-{names[b - low]}"]
    return rng.choice(choices)


def test_property_random_expressions_in_utc() -> None:
    rng = random.Random(20240229)
    months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    weekdays = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
    checked = 0
    while checked < 300:
        expr = " ".join([_random_field(rng, 0, 59, []), _random_field(rng, 0, 23, []),
                         _random_field(rng, 1, 31, []), _random_field(rng, 1, 12, months),
                         _random_field(rng, 0, 6, weekdays)])
        try:
            cron = Cron.parse(expr)
        except ValueError as exc:
            assert "can never fire" in str(exc)
            continue
        t = EPOCH + timedelta(seconds=rng.randrange(30 * 365 * 86_400, 60 * 365 * 86_400))
        fire = cron.next_after(t)
        assert fire > t, expr
        assert _wall_matches(cron, fire.replace(tzinfo=None)), expr
        assert fire == _reference_next_utc(cron, t), (expr, t)
        minute = t.replace(second=0, microsecond=0) + MINUTE
        while minute < min(fire, t + timedelta(hours=12)):  # nothing fires in between (the reference covers the rest)
            assert not _wall_matches(cron, minute.replace(tzinfo=None)), (expr, t, minute)
            minute += MINUTE
        checked += 1


# --- time zones and DST ---------------------------------------------------------------------------


@pytest.mark.parametrize(("tz", "after", "expected"), [
    # Paris: CET (+1) until 2024-03-31 01:00 UTC, then CEST (+2) until 2024-10-27 01:00 UTC.
    ("Europe/Paris", utc(2024, 3, 29), [utc(2024, 3, 29, 8), utc(2024, 3, 30, 8), utc(2024, 3, 31, 7),
                                        utc(2024, 4, 1, 7)]),
    ("Europe/Paris", utc(2024, 10, 26), [utc(2024, 10, 26, 7), utc(2024, 10, 27, 8), utc(2024, 10, 28, 8)]),
    # New York: EST (-5) until 2024-03-10 07:00 UTC, EDT (-4) until 2024-11-03 06:00 UTC.
    ("America/New_York", utc(2024, 3, 9), [utc(2024, 3, 9, 14), utc(2024, 3, 10, 13), utc(2024, 3, 11, 13)]),
    ("America/New_York", utc(2024, 11, 2), [utc(2024, 11, 2, 13), utc(2024, 11, 3, 14), utc(2024, 11, 4, 14)]),
    ("UTC", utc(2024, 3, 30), [utc(2024, 3, 30, 9), utc(2024, 3, 31, 9)]),
])
def test_nine_am_across_dst(tz: str, after: datetime, expected: list[datetime]) -> None:
    assert series("0 9 * * *", tz, after, len(expected)) == expected


@pytest.mark.parametrize(("expr", "tz", "after", "expected"), [
    # Spring forward, Paris 2024-03-31: 02:00-02:59 does not exist; 03:00 CEST is 01:00 UTC.
    ("30 2 * * *", "Europe/Paris", utc(2024, 3, 30), [utc(2024, 3, 30, 1, 30), utc(2024, 3, 31, 1),
                                                      utc(2024, 4, 1, 0, 30)]),
    ("*/15 2 * * *", "Europe/Paris", utc(2024, 3, 30, 23), [utc(2024, 3, 31, 1), utc(2024, 4, 1, 0),
                                                            utc(2024, 4, 1, 0, 15)]),
    ("0,30 2,3 * * *", "Europe/Paris", utc(2024, 3, 30, 23), [utc(2024, 3, 31, 1), utc(2024, 3, 31, 1, 30),
                                                              utc(2024, 4, 1, 0)]),
    ("* * * * *", "Europe/Paris", utc(2024, 3, 31, 0, 58), [utc(2024, 3, 31, 0, 59), utc(2024, 3, 31, 1),
                                                            utc(2024, 3, 31, 1, 1)]),
    ("30 2 * * *", "America/New_York", utc(2024, 3, 9, 12), [utc(2024, 3, 10, 7), utc(2024, 3, 11, 6, 30)]),
    # Lord Howe moves by 30 minutes: 02:00 -> 02:30 (+10:30 -> +11) on 2024-10-06.
    ("15 2 * * *", "Australia/Lord_Howe", utc(2024, 10, 4), [utc(2024, 10, 4, 15, 45), utc(2024, 10, 5, 15, 30),
                                                             utc(2024, 10, 6, 15, 15)]),
    # Samoa skipped 2011-12-30 entirely (-10 -> +14): its noon fires when the 31st begins.
    ("0 12 * * *", "Pacific/Apia", utc(2011, 12, 29), [utc(2011, 12, 29, 22), utc(2011, 12, 30, 10),
                                                       utc(2011, 12, 30, 22)]),
])
def test_spring_forward_gap_fires_once_when_the_gap_ends(
        expr: str, tz: str, after: datetime, expected: list[datetime]) -> None:
    assert series(expr, tz, after, len(expected)) == expected


@pytest.mark.parametrize(("expr", "tz", "after", "expected"), [
    # Fall back, Paris 2024-10-27: 02:00-02:59 happens at 00:xx UTC (CEST), then again at 01:xx UTC (CET).
    ("30 2 * * *", "Europe/Paris", utc(2024, 10, 26), [utc(2024, 10, 26, 0, 30), utc(2024, 10, 27, 0, 30),
                                                       utc(2024, 10, 28, 1, 30)]),
    ("0 * * * *", "Europe/Paris", utc(2024, 10, 26, 22, 30), [utc(2024, 10, 26, 23), utc(2024, 10, 27, 0),
                                                              utc(2024, 10, 27, 2), utc(2024, 10, 27, 3)]),
    ("* * * * *", "Europe/Paris", utc(2024, 10, 27, 0, 58), [utc(2024, 10, 27, 0, 59), utc(2024, 10, 27, 2),
                                                             utc(2024, 10, 27, 2, 1)]),
    # New York 2024-11-03: 01:00-01:59 at 05:xx UTC (EDT), then 06:xx UTC (EST).
    ("30 1 * * *", "America/New_York", utc(2024, 11, 2, 12), [utc(2024, 11, 3, 5, 30), utc(2024, 11, 4, 6, 30)]),
])
def test_fall_back_repeated_time_fires_once_at_first_occurrence(
        expr: str, tz: str, after: datetime, expected: list[datetime]) -> None:
    assert series(expr, tz, after, len(expected)) == expected


def test_inside_the_repeated_hour() -> None:
    cron = Cron.parse("30 2 * * *", "Europe/Paris")
    assert cron.next_after(utc(2024, 10, 27, 0, 10)) == utc(2024, 10, 27, 0, 30)  # first pass, 02:10 CEST
    assert cron.next_after(utc(2024, 10, 27, 1, 10)) == utc(2024, 10, 28, 1, 30)  # second pass, 02:10 CET
    second_pass = datetime(2024, 10, 27, 2, 10, tzinfo=PARIS, fold=1)
    assert cron.next_after(second_pass) == utc(2024, 10, 28, 1, 30)
    assert cron.next_after(utc(2024, 3, 31, 1)) == utc(2024, 4, 1, 0, 30)  # exactly at the gap's end


def _brute_fires_at(cron: Cron, zone: ZoneInfo, instant: datetime) -> bool:
    """Whether the documented DST rules fire at this UTC minute (the zones move on whole minutes)."""
    wall = instant.astimezone(zone)
    if wall.fold == 0 and _wall_matches(cron, wall.replace(tzinfo=None)):
        return True
    previous = (instant - MINUTE).astimezone(zone).replace(tzinfo=None, fold=0)
    skipped = previous + MINUTE
    while skipped < wall.replace(tzinfo=None, fold=0):  # wall times the clock just jumped over
        if _wall_matches(cron, skipped):
            return True
        skipped += MINUTE
    return False


@pytest.mark.parametrize(("tz", "transitions"), [
    ("Europe/Paris", [utc(2024, 3, 31, 1), utc(2024, 10, 27, 1)]),
    ("America/New_York", [utc(2024, 3, 10, 7), utc(2024, 11, 3, 6)]),
    ("Australia/Lord_Howe", [utc(2024, 4, 6, 15), utc(2024, 10, 5, 15, 30)]),
])
def test_property_dst_against_minute_by_minute_model(tz: str, transitions: list[datetime]) -> None:
    rng = random.Random(tz)
    zone = ZoneInfo(tz)
    exprs = ["* * * * *", "*/7 * * * *", "30 2 * * *", "0,30 1-3 * * *", "15 */2 * * *", "45 1 * * *",
             "*/15 2 * * *", "59 23 * * *", "0 3 * * *", "0 2 * * *", "10-20 0-4 * * *", "0 9 * * *"]
    for _ in range(150):
        cron = Cron.parse(rng.choice(exprs), tz)
        t = rng.choice(transitions) + timedelta(seconds=rng.randrange(-6 * 3600, 6 * 3600))
        fire = cron.next_after(t)
        minute = t.replace(second=0, microsecond=0) + MINUTE
        while not _brute_fires_at(cron, zone, minute):
            minute += MINUTE
        assert fire == minute, (cron, t)


# --- Every ------------------------------------------------------------------------------------------


def test_every_from_the_epoch() -> None:
    hourly = Every(timedelta(hours=1))
    assert hourly.anchor == EPOCH
    assert hourly.next_after(utc(2024, 5, 1, 10, 30)) == utc(2024, 5, 1, 11)
    assert hourly.next_after(utc(2024, 5, 1, 11)) == utc(2024, 5, 1, 12)  # strictly after
    assert hourly.next_after(utc(1969, 12, 31, 23, 30)) == EPOCH
    assert hourly.next_after(utc(2024, 5, 1, 11)).tzinfo is UTC


def test_every_with_anchor_sets_the_phase_both_ways() -> None:
    every = Every(timedelta(minutes=45), anchor=utc(2030, 1, 1, 0, 10))
    assert every.next_after(utc(2030, 1, 1, 0, 10)) == utc(2030, 1, 1, 0, 55)
    assert every.next_after(utc(2030, 1, 1)) == utc(2030, 1, 1, 0, 10)
    assert every.next_after(utc(2029, 12, 31, 23, 20)) == utc(2029, 12, 31, 23, 25)  # before the anchor too
    assert fire_times(every, utc(2030, 1, 1), utc(2030, 1, 1, 3), 10) == [
        utc(2030, 1, 1, 0, 10), utc(2030, 1, 1, 0, 55), utc(2030, 1, 1, 1, 40), utc(2030, 1, 1, 2, 25)]


def test_every_counts_elapsed_time_across_dst() -> None:
    paris_anchor = datetime(2024, 3, 30, 9, tzinfo=PARIS)  # 08:00 UTC
    daily = Every(timedelta(days=1), anchor=paris_anchor)
    assert daily.anchor == utc(2024, 3, 30, 8) and daily.anchor.tzinfo is UTC
    fire = daily.next_after(paris_anchor)
    assert fire == utc(2024, 3, 31, 8)
    assert fire.astimezone(PARIS).hour == 10  # 24 h later is 10:00 CEST
    inside = datetime(2024, 3, 31, 9, 30, tzinfo=PARIS)  # same tzinfo as the anchor; 07:30 UTC
    assert daily.next_after(inside) == utc(2024, 3, 31, 8)


def test_every_sub_second_and_validation() -> None:
    fast = Every(timedelta(milliseconds=250))
    assert fast.next_after(utc(2024, 1, 1, 0, 0, 1)) == utc(2024, 1, 1, 0, 0, 1) + timedelta(milliseconds=250)
    for bad in (timedelta(0), timedelta(seconds=-1)):
        with pytest.raises(ValueError, match="interval must be > 0"):
            Every(bad)
    with pytest.raises(ValueError, match="anchor must be a timezone-aware datetime"):
        Every(timedelta(hours=1), anchor=datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="t must be a timezone-aware datetime"):
        Every(timedelta(hours=1)).next_after(datetime(2024, 1, 1))
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.interval = timedelta(1)  # type: ignore[misc]


def test_both_are_schedules() -> None:
    class Noon:
        def next_after(self, t: datetime) -> datetime:
            return Cron.parse("0 12 * * *").next_after(t)

    for schedule in (Cron.parse("@daily"), Every(timedelta(hours=1)), Noon()):
        assert isinstance(schedule, Schedule)
    assert not isinstance(object(), Schedule)


# --- fire_times ---------------------------------------------------------------------------------------


def test_fire_times_window_is_half_open_and_limit_keeps_the_earliest() -> None:
    hourly = Cron.parse("0 * * * *")
    assert fire_times(hourly, utc(2024, 1, 1), utc(2024, 1, 1, 3), 10) == [
        utc(2024, 1, 1, 1), utc(2024, 1, 1, 2), utc(2024, 1, 1, 3)]
    assert fire_times(hourly, utc(2024, 1, 1), utc(2024, 1, 2), 2) == [utc(2024, 1, 1, 1), utc(2024, 1, 1, 2)]
    assert fire_times(hourly, utc(2024, 1, 1), utc(2024, 1, 2), 0) == []
    assert fire_times(hourly, utc(2024, 1, 1), utc(2024, 1, 1), 5) == []
    assert fire_times(hourly, utc(2024, 1, 2), utc(2024, 1, 1), 5) == []
    assert len(fire_times(Cron.parse("* * * * *"), utc(2024, 1, 1), utc(2024, 1, 2), 10_000)) == 1440


def test_fire_times_validation() -> None:
    hourly = Cron.parse("0 * * * *")
    with pytest.raises(ValueError, match="limit must be >= 0"):
        fire_times(hourly, utc(2024, 1, 1), utc(2024, 1, 2), -1)
    with pytest.raises(ValueError, match="until must be a timezone-aware datetime"):
        fire_times(hourly, utc(2024, 1, 1), datetime(2024, 1, 2), 1)
    with pytest.raises(ValueError, match="after must be a timezone-aware datetime"):
        fire_times(hourly, datetime(2024, 1, 1), utc(2024, 1, 2), 1)


# --- missed fires -------------------------------------------------------------------------------------


QUARTERLY = Cron.parse("*/15 * * * *")
POLICIES = list(MissedFirePolicy)


@pytest.mark.parametrize("policy", POLICIES)
def test_first_start_runs_nothing_missed(policy: MissedFirePolicy) -> None:
    assert due_fire_times(QUARTERLY, None, utc(2024, 1, 1, 9, 0, 10), policy) == []
    assert due_fire_times(QUARTERLY, None, utc(2024, 1, 1, 9, 14), policy) == []
    assert due_fire_times(QUARTERLY, None, utc(2024, 1, 1, 9, 15), policy) == [utc(2024, 1, 1, 9, 15)]


@pytest.mark.parametrize("policy", POLICIES)
def test_nothing_due(policy: MissedFirePolicy) -> None:
    now = utc(2024, 1, 1, 9, 10)
    assert due_fire_times(QUARTERLY, utc(2024, 1, 1, 9, 0), now, policy) == []
    assert due_fire_times(QUARTERLY, now, now, policy) == []
    assert due_fire_times(QUARTERLY, utc(2024, 1, 1, 9, 30), now, policy) == []  # clock skew


@pytest.mark.parametrize("policy", POLICIES)
def test_on_time_tick_runs_the_fire_time_whatever_the_policy(policy: MissedFirePolicy) -> None:
    last, now = utc(2024, 1, 1, 8, 45, 0), utc(2024, 1, 1, 9, 0, 2)
    assert due_fire_times(QUARTERLY, last, now, policy) == [utc(2024, 1, 1, 9)]


def test_docstring_example_down_for_an_hour() -> None:
    last = utc(2024, 1, 1, 8)
    missed = [utc(2024, 1, 1, 8, 15), utc(2024, 1, 1, 8, 30), utc(2024, 1, 1, 8, 45), utc(2024, 1, 1, 9)]
    now = utc(2024, 1, 1, 9, 0, 10)
    assert due_fire_times(QUARTERLY, last, now, MissedFirePolicy.ALL) == missed
    assert due_fire_times(QUARTERLY, last, now, MissedFirePolicy.LATEST) == [utc(2024, 1, 1, 9)]
    assert due_fire_times(QUARTERLY, last, now, MissedFirePolicy.SKIP) == [utc(2024, 1, 1, 9)]
    now = utc(2024, 1, 1, 9, 5)
    assert due_fire_times(QUARTERLY, last, now, MissedFirePolicy.ALL) == missed
    assert due_fire_times(QUARTERLY, last, now, MissedFirePolicy.LATEST) == [utc(2024, 1, 1, 9)]
    assert due_fire_times(QUARTERLY, last, now, MissedFirePolicy.SKIP) == []
    assert due_fire_times(QUARTERLY, last, now) == [utc(2024, 1, 1, 9)]  # LATEST is the default


def test_grace_decides_what_is_on_time() -> None:
    last, now = utc(2024, 1, 1, 8), utc(2024, 1, 1, 9, 5)
    wide = timedelta(minutes=10)
    assert due_fire_times(QUARTERLY, last, now, MissedFirePolicy.SKIP, grace=wide) == [utc(2024, 1, 1, 9)]
    assert due_fire_times(QUARTERLY, last, now, MissedFirePolicy.SKIP, grace=timedelta(0)) == []
    assert due_fire_times(QUARTERLY, last, now, MissedFirePolicy.LATEST, grace=timedelta(0)) == [utc(2024, 1, 1, 9)]
    exactly = utc(2024, 1, 1, 9)
    assert due_fire_times(QUARTERLY, last, exactly, MissedFirePolicy.SKIP, grace=timedelta(0)) == []


def test_dense_schedule_keeps_every_on_time_fire() -> None:
    every_10s = Every(timedelta(seconds=10))
    last, now = utc(2024, 1, 1, 9), utc(2024, 1, 1, 9, 0, 35)  # a late tick, not an outage
    on_time = [utc(2024, 1, 1, 9, 0, 10), utc(2024, 1, 1, 9, 0, 20), utc(2024, 1, 1, 9, 0, 30)]
    for policy in POLICIES:
        assert due_fire_times(every_10s, last, now, policy) == on_time
    down = utc(2024, 1, 1, 8)
    assert due_fire_times(every_10s, down, now, MissedFirePolicy.SKIP) == [
        utc(2024, 1, 1, 8, 59, 40), utc(2024, 1, 1, 8, 59, 50), utc(2024, 1, 1, 9), *on_time]
    assert len(due_fire_times(every_10s, down, now, MissedFirePolicy.ALL)) == 100


def test_latest_when_nothing_is_on_time() -> None:
    daily = Cron.parse("0 3 * * *")
    last, now = utc(2024, 1, 1, 3), utc(2024, 1, 5, 12)
    assert due_fire_times(daily, last, now, MissedFirePolicy.LATEST) == [utc(2024, 1, 5, 3)]
    assert due_fire_times(daily, last, now, MissedFirePolicy.SKIP) == []
    assert due_fire_times(daily, last, now, MissedFirePolicy.ALL) == [
        utc(2024, 1, 2, 3), utc(2024, 1, 3, 3), utc(2024, 1, 4, 3), utc(2024, 1, 5, 3)]


def test_all_caps_at_max_catch_up_keeping_the_most_recent() -> None:
    last, now = utc(2024, 1, 1), utc(2024, 1, 2, 0, 0, 5)
    due = due_fire_times(QUARTERLY, last, now, MissedFirePolicy.ALL, max_catch_up=10)
    assert due == fire_times(QUARTERLY, utc(2024, 1, 1, 21, 30), now, 100)
    assert len(due) == 10 and due[-1] == utc(2024, 1, 2)
    assert len(due_fire_times(QUARTERLY, last, now, MissedFirePolicy.ALL)) == 96
    assert len(due_fire_times(QUARTERLY, last, now, MissedFirePolicy.ALL, max_catch_up=96)) == 96


class CountingSchedule:
    """Counts ``next_after`` calls."""

    def __init__(self, inner: Schedule) -> None:
        self.inner = inner
        self.calls = 0

    def next_after(self, t: datetime) -> datetime:
        """Delegates, counting."""
        self.calls += 1
        return self.inner.next_after(t)


@pytest.mark.parametrize(("policy", "max_calls"), [
    (MissedFirePolicy.ALL, 500), (MissedFirePolicy.LATEST, 40), (MissedFirePolicy.SKIP, 20)])
def test_a_ten_year_outage_is_cheap(policy: MissedFirePolicy, max_calls: int) -> None:
    schedule = CountingSchedule(Cron.parse("* * * * *"))
    last, now = utc(2014, 1, 1), utc(2024, 1, 1, 0, 0, 30) + timedelta(hours=1)
    due = due_fire_times(schedule, last, now, policy)
    assert due[-1] == utc(2024, 1, 1, 1)  # 30 s ago: on time
    assert len(due) == (100 if policy is MissedFirePolicy.ALL else 1)
    assert schedule.calls <= max_calls


def test_yearly_outage_finds_the_latest() -> None:
    schedule = CountingSchedule(Cron.parse("@yearly"))
    due = due_fire_times(schedule, utc(1990, 1, 1), utc(2024, 6, 1), MissedFirePolicy.LATEST)
    assert due == [utc(2024, 1, 1)]
    assert schedule.calls < 100
    assert due_fire_times(Cron.parse("@yearly"), utc(2023, 1, 1), utc(2024, 6, 1), MissedFirePolicy.ALL) == [
        utc(2024, 1, 1)]


def test_due_fire_times_normalises_zones() -> None:
    # 02:30 CET on 2024-10-27 is ambiguous; a Paris-zoned `now` must still equal the UTC fire time.
    cron = Cron.parse("30 1 * * *")  # 01:30 UTC
    now = datetime(2024, 10, 27, 2, 30, tzinfo=PARIS, fold=1)
    assert due_fire_times(cron, None, now) == [utc(2024, 10, 27, 1, 30)]
    assert due_fire_times(cron, datetime(2024, 10, 26, 3, tzinfo=PARIS), now) == [utc(2024, 10, 27, 1, 30)]


def test_due_fire_times_validation() -> None:
    now = utc(2024, 1, 1)
    with pytest.raises(ValueError, match="max_catch_up must be >= 1"):
        due_fire_times(QUARTERLY, None, now, max_catch_up=0)
    with pytest.raises(ValueError, match="grace must be >= 0"):
        due_fire_times(QUARTERLY, None, now, grace=timedelta(seconds=-1))
    with pytest.raises(ValueError, match="now must be a timezone-aware datetime"):
        due_fire_times(QUARTERLY, None, datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="last_fired must be a timezone-aware datetime"):
        due_fire_times(QUARTERLY, datetime(2023, 1, 1), now)
    assert MissedFirePolicy("latest") is MissedFirePolicy.LATEST
    assert [p.value for p in MissedFirePolicy] == ["all", "latest", "skip"]


def test_simulated_scheduler_never_duplicates_or_loses_on_time_fires() -> None:
    """A scheduler ticking at random late moments, restarted twice, with each policy."""
    schedule = Cron.parse("*/5 * * * *")
    start, end = utc(2024, 1, 1), utc(2024, 1, 2)
    expected = fire_times(schedule, start, end, 10_000)
    for policy in POLICIES:
        rng = random.Random(policy.value)
        enqueued: list[datetime] = []
        last: datetime = start
        now = start
        while now < end:
            now = min(end, schedule.next_after(now) + timedelta(seconds=rng.uniform(0, 20)))
            if rng.random() < 0.01:
                now += timedelta(hours=1)  # an outage
            enqueued += due_fire_times(schedule, last, now, policy)
            last = now
        assert enqueued == sorted(set(enqueued))
        assert set(enqueued) <= set(expected)
        if policy is MissedFirePolicy.ALL:
            assert enqueued == [f for f in expected if f <= last]


# --- fire_id ------------------------------------------------------------------------------------------


def test_fire_id_is_deterministic_and_zone_independent() -> None:
    fire = utc(2024, 1, 1, 9)
    assert fire_id("report", fire) == f"periodic:report:{int(fire.timestamp())}" == "periodic:report:1704099600"
    assert fire_id("report", fire.astimezone(NEW_YORK)) == fire_id("report", fire)
    assert fire_id("report", fire) != fire_id("report", fire + MINUTE)
    assert fire_id("report", fire) != fire_id("digest", fire)
    assert fire_id("r", EPOCH) == "periodic:r:0"
    assert fire_id("r", utc(1969, 12, 31, 23, 59, 59)) == "periodic:r:-1"


def test_fire_id_keeps_sub_second_fire_times_apart() -> None:
    fire = utc(2024, 1, 1, 9)
    assert fire_id("r", fire + timedelta(milliseconds=250)) == "periodic:r:1704099600.250000"
    assert fire_id("r", EPOCH - timedelta(microseconds=1)) == "periodic:r:-0.000001"
    assert fire_id("r", EPOCH - timedelta(seconds=1, microseconds=500)) == "periodic:r:-1.000500"
    ids = {fire_id("r", f) for f in fire_times(Every(timedelta(milliseconds=100)), fire, fire + MINUTE, 1000)}
    assert len(ids) == 600


@pytest.mark.parametrize(("name", "fire", "message"), [
    ("", utc(2024, 1, 1), "non-empty"),
    ("r", datetime(2024, 1, 1), "fire_time must be a timezone-aware datetime"),
])
def test_fire_id_validation(name: str, fire: datetime, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fire_id(name, fire)


def test_every_public_name_is_documented() -> None:
    import aiocelery.timing.schedule as module

    public: list[object] = [Cron, Every, MissedFirePolicy, Schedule, due_fire_times, fire_id, fire_times,
                            Cron.parse, Cron.next_after, Every.next_after, Schedule.next_after]
    assert module.__doc__
    for obj in public:
        assert obj.__doc__, obj
