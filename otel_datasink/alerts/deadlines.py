"""Deadlines as time: a rule's ``deadline = "07:00"`` (daily) or ``"mon 07:00"`` (weekly) in its ``timezone``, and
the periods it cuts time into, each with its deadline instant (UTC), daylight saving time included.

A period is a calendar day (or a week from Monday 00:00) of the rule's time zone; its deadline is the time of day
given, on that day (on the day named, in that week). On the day a clock changes the period is 23 or 25 hours
long, and 07:00 is still 07:00 on the wall clock: its UTC instant moves by the hour. A deadline time that does not
exist that day (02:30 when clocks jump from 02:00 to 03:00) is the instant the clock shows it after the jump
(03:30); one that happens twice (clocks going back) is the first.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import zoneinfo
from collections.abc import Iterator
from typing import Any

from otel_datasink.tomlcheck import Invalid

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DEADLINE = re.compile(r"(?:(?P<day>[a-z]{3})\s+)?(?P<hour>\d{1,2}):(?P<minute>\d{2})")
_UTC = datetime.timezone.utc


@dataclasses.dataclass(frozen=True)
class Deadline:
    """``deadline`` of a rule: a time of day, on every day (``weekday`` None) or on one day of each week."""

    time: datetime.time
    weekday: int | None = None
    """0 for Monday ... 6 for Sunday: a weekly deadline, whose period is the week from Monday 00:00."""
    timezone: str = "UTC"
    """An IANA time zone name (``Europe/Berlin``): the wall clock the deadline is read on."""

    def __str__(self) -> str:
        day = f"{WEEKDAYS[self.weekday]} " if self.weekday is not None else ""
        return f"{day}{self.time:%H:%M} {self.timezone}"

    def periods(self, start: datetime.datetime, end: datetime.datetime) -> Iterator[Period]:
        """The periods whose deadline lies in [start, end), in order."""
        zone = zoneinfo.ZoneInfo(self.timezone)
        day = start.astimezone(zone).date() - datetime.timedelta(days=7 if self.weekday is not None else 1)
        if self.weekday is not None:
            day -= datetime.timedelta(days=day.weekday())  # the Monday of its week
        step = datetime.timedelta(days=7 if self.weekday is not None else 1)
        while True:
            period = self._period(day, step, zone)
            if period.deadline >= end:
                return
            if period.deadline >= start:
                yield period
            day += step

    def period_at(self, instant: datetime.datetime) -> Period:
        """The period that ``instant`` falls in."""
        zone = zoneinfo.ZoneInfo(self.timezone)
        day = instant.astimezone(zone).date()
        if self.weekday is not None:
            day -= datetime.timedelta(days=day.weekday())
        return self._period(day, datetime.timedelta(days=7 if self.weekday is not None else 1), zone)

    def _period(self, first_day: datetime.date, step: datetime.timedelta, zone: zoneinfo.ZoneInfo) -> Period:
        due_day = first_day + datetime.timedelta(days=self.weekday or 0)
        return Period(
            start=_instant(datetime.datetime.combine(first_day, datetime.time(0)), zone),
            deadline=_instant(datetime.datetime.combine(due_day, self.time), zone),
            end=_instant(datetime.datetime.combine(first_day + step, datetime.time(0)), zone),
        )


@dataclasses.dataclass(frozen=True)
class Period:
    """One period of a deadline (UTC instants): [start, end), due at ``deadline``."""

    start: datetime.datetime
    deadline: datetime.datetime
    end: datetime.datetime


def _instant(wall: datetime.datetime, zone: zoneinfo.ZoneInfo) -> datetime.datetime:
    """The UTC instant a wall-clock time of ``zone`` shows: the first of two (fold 0), and one that the clock skips
    is read with the offset before the jump (02:30 in a 02:00 -> 03:00 jump is 03:30)."""
    return wall.replace(tzinfo=zone).astimezone(_UTC)


def parse_deadline(value: Any) -> Deadline:
    """``"07:00"`` (daily) or ``"mon 07:00"`` (weekly), in UTC until :func:`with_timezone`; :class:`Invalid` else."""
    text = value.strip().lower() if isinstance(value, str) else ""
    match = _DEADLINE.fullmatch(text)
    message = 'must be a time of day "HH:MM" (daily) or a day and time "mon 07:00" (weekly)'
    if match is None:
        raise Invalid(message)
    hour, minute, day = int(match["hour"]), int(match["minute"]), match["day"]
    if hour > 23 or minute > 59 or (day is not None and day not in WEEKDAYS):
        raise Invalid(f"{message}; days are {', '.join(WEEKDAYS)}")
    return Deadline(datetime.time(hour, minute), WEEKDAYS.index(day) if day is not None else None)


def parse_timezone(value: Any) -> str:
    """An IANA time zone name that this system knows (``Europe/Berlin``, ``UTC``); :class:`Invalid` else."""
    if not isinstance(value, str) or not value.strip():
        raise Invalid('must be a time zone name such as "Europe/Berlin" or "UTC"')
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise Invalid(f'unknown time zone {value!r} (an IANA name such as "Europe/Berlin")') from None
    return value


def span_text(span: datetime.timedelta) -> str:
    """``2h``, ``45m``, ``1h30m``: a duration of a rule as it is written."""
    seconds = int(span.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)
