"""Attendance read from recognition events: who of a gallery was seen on a local day, or over a range.

A day is [local midnight, next local midnight) in the requested time zone, computed by zoneinfo: 23
or 25 hours on daylight-saving days, never 24 h arithmetic. An appearance (an event, from its
first_seen to its last_seen) counts on every day it overlaps, clipped to that day. Only known events
of the gallery's current members count, from any camera or browser stream."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

from django.conf import settings

from events.models import Event
from people.models import Gallery, Person
from streams.models import Camera

MAX_RANGE_DAYS = 366
# Dates outside these are refused: every bound then converts to UTC without overflow.
MIN_DATE = date(1970, 1, 1)
MAX_DATE = date(9998, 12, 31)


@lru_cache(maxsize=1)
def zone_names() -> frozenset[str]:
    """The IANA zones this machine knows, read once per process."""
    return frozenset(available_timezones())


def zone_by_name(name: str) -> ZoneInfo | None:
    """The IANA zone ``name`` ("Europe/Paris"), or None: checked against the zone list first, so a
    path or a file of the zone folder that is not a zone is never opened."""
    name = name.strip()
    if name not in zone_names():
        return None
    return ZoneInfo(name)


def default_zone() -> ZoneInfo:
    """ATTENDANCE_TIME_ZONE (checked at start-up by the app's system check)."""
    return ZoneInfo(settings.ATTENDANCE_TIME_ZONE)


def local_today(tz: ZoneInfo, *, now: datetime | None = None) -> date:
    return (now or datetime.now(UTC)).astimezone(tz).date()


def day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The local day as [start, end) aware datetimes in ``tz``. Each bound is a wall-clock midnight
    resolved by zoneinfo (fold=0: a midnight skipped by a transition resolves to the transition's
    instant), so the two are 23, 24 or 25 hours apart."""
    start = datetime.combine(day, time.min, tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=tz)
    # Normalise through UTC: the instant zoneinfo meant, shown with the offset in force then.
    return start.astimezone(UTC).astimezone(tz), end.astimezone(UTC).astimezone(tz)


@dataclass(frozen=True)
class _Appearance:
    person_id: int
    first_seen: datetime
    last_seen: datetime
    source_name: str


def _members(gallery: Gallery) -> list[Person]:
    return list(gallery.people.order_by("name", "id").only("id", "name", "external_id"))


def _appearances(*, gallery: Gallery, start: datetime, end: datetime, camera: Camera | None) -> list[_Appearance]:
    """Known events of the gallery's members overlapping [start, end): one query for all members."""
    queryset = Event.objects.filter(
        kind=Event.Kind.KNOWN, person__galleries=gallery, first_seen__lt=end, last_seen__gte=start,
    )
    if camera is not None:
        queryset = queryset.filter(camera=camera)
    rows = queryset.order_by("first_seen", "id").values_list("person_id", "first_seen", "last_seen", "source_name")
    # An event whose last_seen came before its first_seen (a clock step) is one instant.
    return [_Appearance(pid, first, max(first, last), name) for pid, first, last, name in rows]


@dataclass
class _Seen:
    person: Person
    first_seen: datetime | None = None  # clipped to the day or range, in its zone
    last_seen: datetime | None = None

    def see(self, appearance: _Appearance, start: datetime, end: datetime, tz: ZoneInfo) -> datetime:
        """Widen first and last seen by ``appearance`` clipped to [start, end]; returns its clipped
        first instant."""
        first = max(appearance.first_seen, start).astimezone(tz)
        last = min(appearance.last_seen, end).astimezone(tz)
        self.first_seen = first if self.first_seen is None else min(self.first_seen, first)
        self.last_seen = last if self.last_seen is None else max(self.last_seen, last)
        return first


# ---- one day ---------------------------------------------------------------------------------------

@dataclass
class MemberDay(_Seen):
    cameras: list[str] = field(default_factory=list)
    appearances: int = 0

    @property
    def present(self) -> bool:
        return self.appearances > 0


@dataclass(frozen=True)
class AttendanceDay:
    gallery: Gallery
    day: date
    tz: ZoneInfo
    start: datetime
    end: datetime
    camera: Camera | None
    members: list[MemberDay]

    @property
    def present(self) -> int:
        return sum(member.present for member in self.members)

    @property
    def absent(self) -> int:
        return len(self.members) - self.present


def attendance_day(*, gallery: Gallery, day: date, tz: ZoneInfo, camera: Camera | None = None) -> AttendanceDay:
    """Every current member of ``gallery`` (by name) with their attendance on the local ``day``."""
    start, end = day_bounds(day, tz)
    members = [MemberDay(person=person) for person in _members(gallery)]
    by_id = {member.person.pk: member for member in members}
    cameras: dict[int, set[str]] = {}
    for appearance in _appearances(gallery=gallery, start=start, end=end, camera=camera):
        member = by_id.get(appearance.person_id)
        if member is None:  # joined the gallery between the two queries
            continue
        member.see(appearance, start, end, tz)
        member.appearances += 1
        cameras.setdefault(appearance.person_id, set()).add(appearance.source_name)
    for person_id, names in cameras.items():
        by_id[person_id].cameras = sorted(names)
    return AttendanceDay(gallery=gallery, day=day, tz=tz, start=start, end=end, camera=camera, members=members)


# ---- a range of days -------------------------------------------------------------------------------

@dataclass
class MemberRange(_Seen):
    dates: list[date] = field(default_factory=list)  # the local days present, in order

    @property
    def days_present(self) -> int:
        return len(self.dates)


@dataclass(frozen=True)
class AttendanceRange:
    gallery: Gallery
    start_date: date
    end_date: date
    tz: ZoneInfo
    start: datetime
    end: datetime
    camera: Camera | None
    members: list[MemberRange]

    @property
    def days(self) -> int:
        return (self.end_date - self.start_date).days + 1


def _local_dates(first: datetime, last: datetime, tz: ZoneInfo) -> list[date]:
    """The local days an appearance [first, last] overlaps (both already clipped to the range)."""
    day, last_day = first.astimezone(tz).date(), last.astimezone(tz).date()
    days = []
    while day <= last_day:
        days.append(day)
        day += timedelta(days=1)
    return days


def attendance_range(
    *, gallery: Gallery, start: date, end: date, tz: ZoneInfo, camera: Camera | None = None,
) -> AttendanceRange:
    """Per current member: the local days in [start, end] (both included) they were present on, and
    when they were first and last seen over the range. At most MAX_RANGE_DAYS days."""
    if end < start:
        raise ValueError("end is before start")
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise ValueError(f"a range is at most {MAX_RANGE_DAYS} days")
    range_start, _ = day_bounds(start, tz)
    _, range_end = day_bounds(end, tz)
    members = [MemberRange(person=person) for person in _members(gallery)]
    by_id = {member.person.pk: member for member in members}
    days: dict[int, set[date]] = {}
    for appearance in _appearances(gallery=gallery, start=range_start, end=range_end, camera=camera):
        member = by_id.get(appearance.person_id)
        if member is None:
            continue
        first = member.see(appearance, range_start, range_end, tz)
        # A last_seen clipped to the range's end is that end's midnight: the day before it is the last.
        last_in_range = min(appearance.last_seen, range_end - timedelta(microseconds=1))
        days.setdefault(appearance.person_id, set()).update(_local_dates(first, last_in_range, tz))
    for person_id, dates in days.items():
        by_id[person_id].dates = sorted(dates)
    return AttendanceRange(gallery=gallery, start_date=start, end_date=end, tz=tz, start=range_start,
                           end=range_end, camera=camera, members=members)
