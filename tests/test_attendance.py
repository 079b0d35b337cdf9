"""Attendance selectors: who of a gallery was seen on a local day and over a range of days. Events are
written through the pipeline's own upsert at chosen instants, on the real (test) database; days are
cut in real IANA zones, across midnight and the 2026 daylight-saving changes."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from attendance.selectors import MAX_RANGE_DAYS, attendance_day, attendance_range, day_bounds
from events.services import event_upsert
from people.models import Gallery, Person
from people.services import person_create
from streams.models import Camera

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


# ---- helpers shared with the API and admin tests -------------------------------------------------

def seen(person: Person | None, first: datetime, last: datetime | None = None, *, camera: Camera | None = None,
         source_name: str | None = None, kind: str = "known", closed: bool = True):
    """One appearance, written as the live pipeline writes it: ``first`` to ``last`` (default: 5 s on)."""
    last = last or first + timedelta(seconds=5)
    return event_upsert(
        uid=uuid.uuid4(), source="camera" if camera or source_name is None else "browser",
        camera_id=camera.pk if camera else None,
        source_name=source_name or (camera.name if camera else "door"), user_id=None, gallery_id=None,
        track_id=1, kind=kind, person_id=person.pk if person else None, distance=0.4, confidence=0.67,
        threshold=0.6, first_seen=first, named_at=first, last_seen=last, closed_at=last if closed else None,
        frames_seen=10, frames_recognised=10, face_box={}, face_size=100, sharpness=10.0, embedding=None,
        crop_jpeg=None,
    )


def local(tz: ZoneInfo, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=tz, fold=fold)


def make_scene() -> dict:
    """A class of three (Ann, Bob, Cid), a stranger Dan, and two cameras."""
    gallery = Gallery.objects.create(name="Class 1", slug="class-1")
    other = Gallery.objects.create(name="Other", slug="other")
    people = {name: person_create(name=name, external_id=f"S-{name}", galleries=[gallery])
              for name in ("Bob", "Ann", "Cid")}
    people["Dan"] = person_create(name="Dan", galleries=[other])
    door = Camera.objects.create(name="door", source_url="rtsp://cam/1")
    hall = Camera.objects.create(name="hall", source_url="rtsp://cam/2")
    return {"gallery": gallery, "other": other, "door": door, "hall": hall, **people}


@pytest.fixture
def scene(db):
    return make_scene()


def by_name(sheet) -> dict:
    return {member.person.name: member for member in sheet.members}


# ---- one day ------------------------------------------------------------------------------------

def test_a_day_lists_every_member_present_or_absent(scene, django_assert_num_queries):
    ann, bob, door, hall = scene["Ann"], scene["Bob"], scene["door"], scene["hall"]
    seen(ann, local(PARIS, 2026, 3, 2, 8, 0), local(PARIS, 2026, 3, 2, 8, 5), camera=door)
    seen(ann, local(PARIS, 2026, 3, 2, 10, 0), source_name="browser:reader")
    seen(ann, local(PARIS, 2026, 3, 2, 17, 0), local(PARIS, 2026, 3, 2, 17, 30), camera=door, closed=False)
    seen(bob, local(PARIS, 2026, 3, 2, 9, 0), camera=hall)
    seen(bob, local(PARIS, 2026, 3, 1, 9, 0), camera=hall)  # the day before
    seen(bob, local(PARIS, 2026, 3, 3, 9, 0), camera=door)  # the day after
    seen(scene["Dan"], local(PARIS, 2026, 3, 2, 9, 0), camera=door)  # not a member
    seen(None, local(PARIS, 2026, 3, 2, 9, 0), camera=door, kind="unknown")

    with django_assert_num_queries(2):  # the members, then all their events: not one query per member
        sheet = attendance_day(gallery=scene["gallery"], day=date(2026, 3, 2), tz=PARIS)

    assert [m.person.name for m in sheet.members] == ["Ann", "Bob", "Cid"]
    assert (sheet.present, sheet.absent) == (2, 1)
    a, b, c = sheet.members
    assert a.present and a.appearances == 3 and a.cameras == ["browser:reader", "door"]
    assert a.first_seen == local(PARIS, 2026, 3, 2, 8, 0) and a.last_seen == local(PARIS, 2026, 3, 2, 17, 30)
    assert a.first_seen.utcoffset() == timedelta(hours=1), "times are given in the requested zone"
    assert b.present and b.appearances == 1 and b.cameras == ["hall"]
    assert not c.present and (c.first_seen, c.last_seen, c.cameras, c.appearances) == (None, None, [], 0)


def test_a_camera_filter_counts_that_camera_only(scene):
    seen(scene["Ann"], local(PARIS, 2026, 3, 2, 8, 0), camera=scene["door"])
    seen(scene["Ann"], local(PARIS, 2026, 3, 2, 12, 0), camera=scene["hall"])
    seen(scene["Bob"], local(PARIS, 2026, 3, 2, 9, 0), camera=scene["hall"])
    sheet = by_name(attendance_day(gallery=scene["gallery"], day=date(2026, 3, 2), tz=PARIS, camera=scene["door"]))
    assert sheet["Ann"].appearances == 1 and sheet["Ann"].last_seen.hour == 8 and sheet["Ann"].cameras == ["door"]
    assert not sheet["Bob"].present


def test_membership_is_the_galleries_current_one(scene):
    ann, dan = scene["Ann"], scene["Dan"]
    seen(ann, local(PARIS, 2026, 3, 2, 8, 0))
    seen(dan, local(PARIS, 2026, 3, 2, 8, 0))
    ann.galleries.remove(scene["gallery"])
    dan.galleries.add(scene["gallery"])
    sheet = by_name(attendance_day(gallery=scene["gallery"], day=date(2026, 3, 2), tz=PARIS))
    assert "Ann" not in sheet and sheet["Dan"].present


def test_an_appearance_across_midnight_counts_on_both_days_clipped(scene):
    seen(scene["Ann"], local(PARIS, 2026, 3, 1, 23, 50), local(PARIS, 2026, 3, 2, 0, 10))
    first = by_name(attendance_day(gallery=scene["gallery"], day=date(2026, 3, 1), tz=PARIS))["Ann"]
    second = by_name(attendance_day(gallery=scene["gallery"], day=date(2026, 3, 2), tz=PARIS))["Ann"]
    assert first.present and second.present
    assert (first.first_seen, first.last_seen) == (local(PARIS, 2026, 3, 1, 23, 50), local(PARIS, 2026, 3, 2))
    assert (second.first_seen, second.last_seen) == (local(PARIS, 2026, 3, 2), local(PARIS, 2026, 3, 2, 0, 10))
    assert not by_name(attendance_day(gallery=scene["gallery"], day=date(2026, 3, 3), tz=PARIS))["Ann"].present


@pytest.mark.parametrize(("tz", "day", "hours"), [
    (PARIS, date(2026, 3, 29), 23), (PARIS, date(2026, 10, 25), 25),
    (NEW_YORK, date(2026, 3, 8), 23), (NEW_YORK, date(2026, 11, 1), 25),
    (PARIS, date(2026, 3, 2), 24),
])
def test_daylight_saving_days_are_23_or_25_hours(scene, tz, day, hours):
    start, end = day_bounds(day, tz)
    assert (start.hour, start.minute, end.hour, end.minute) == (0, 0, 0, 0)
    assert start.date() == day and end.date() == day + timedelta(days=1)
    # In UTC: Python subtracts two datetimes of the same zone as wall clocks (always 24 h here).
    assert end.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=hours)

    # 23:30 local is on the day; 00:30 the next day is not (a 24-hour day gets one of the two wrong).
    next_day = day + timedelta(days=1)
    seen(scene["Ann"], local(tz, day.year, day.month, day.day, 23, 30))
    seen(scene["Bob"], local(tz, next_day.year, next_day.month, next_day.day, 0, 30))
    sheet = by_name(attendance_day(gallery=scene["gallery"], day=day, tz=tz))
    assert sheet["Ann"].present and sheet["Ann"].first_seen == local(tz, day.year, day.month, day.day, 23, 30)
    assert not sheet["Bob"].present
    following = by_name(attendance_day(gallery=scene["gallery"], day=next_day, tz=tz))
    assert following["Bob"].present and not following["Ann"].present


def test_a_day_whose_midnight_is_skipped_starts_at_the_change(scene):
    # Santiago springs forward at midnight: 2026-09-06 has no 00:00, its day begins at 01:00 (-03:00).
    start, end = day_bounds(date(2026, 9, 6), ZoneInfo("America/Santiago"))
    assert (start.isoformat(), end.isoformat()) == ("2026-09-06T01:00:00-03:00", "2026-09-07T00:00:00-03:00")
    _, previous_end = day_bounds(date(2026, 9, 5), ZoneInfo("America/Santiago"))
    assert previous_end == start, "the days meet: no instant is in two days or in none"


def test_the_repeated_hour_of_a_fall_back_day_is_on_that_day(scene):
    # 02:30 happens twice in Paris on 2026-10-25: both instants belong to the day, in order.
    early, late = local(PARIS, 2026, 10, 25, 2, 30, fold=0), local(PARIS, 2026, 10, 25, 2, 30, fold=1)
    assert late.astimezone(UTC) - early.astimezone(UTC) == timedelta(hours=1)
    seen(scene["Ann"], early.astimezone(UTC), late.astimezone(UTC))
    ann = by_name(attendance_day(gallery=scene["gallery"], day=date(2026, 10, 25), tz=PARIS))["Ann"]
    assert ann.first_seen.isoformat() == "2026-10-25T02:30:00+02:00"
    assert ann.last_seen.isoformat() == "2026-10-25T02:30:00+01:00"


def test_the_same_instant_is_a_different_day_in_two_zones(scene):
    instant = datetime(2026, 6, 1, 2, 30, tzinfo=UTC)  # 04:30 in Paris, 22:30 the evening before in New York
    seen(scene["Ann"], instant)
    paris = by_name(attendance_day(gallery=scene["gallery"], day=date(2026, 6, 1), tz=PARIS))["Ann"]
    assert paris.present and paris.first_seen.isoformat() == "2026-06-01T04:30:00+02:00"
    new_york = by_name(attendance_day(gallery=scene["gallery"], day=date(2026, 5, 31), tz=NEW_YORK))["Ann"]
    assert new_york.present and new_york.first_seen.isoformat() == "2026-05-31T22:30:00-04:00"
    assert not by_name(attendance_day(gallery=scene["gallery"], day=date(2026, 6, 1), tz=NEW_YORK))["Ann"].present


# ---- a range of days ----------------------------------------------------------------------------

def test_a_range_counts_the_days_each_member_was_present(scene, django_assert_num_queries):
    ann, bob = scene["Ann"], scene["Bob"]
    seen(ann, local(PARIS, 2026, 3, 2, 8, 0))
    seen(ann, local(PARIS, 2026, 3, 4, 8, 0))
    seen(ann, local(PARIS, 2026, 3, 4, 16, 0), local(PARIS, 2026, 3, 4, 16, 45))
    seen(ann, local(PARIS, 2026, 3, 8, 8, 0))  # after the range
    seen(bob, local(PARIS, 2026, 2, 28, 23, 0), local(PARIS, 2026, 3, 1, 0, 20))  # began before it
    with django_assert_num_queries(2):
        summary = attendance_range(gallery=scene["gallery"], start=date(2026, 3, 1), end=date(2026, 3, 7), tz=PARIS)
    assert summary.days == 7
    rows = by_name(summary)
    assert [m.person.name for m in summary.members] == ["Ann", "Bob", "Cid"]
    assert rows["Ann"].dates == [date(2026, 3, 2), date(2026, 3, 4)] and rows["Ann"].days_present == 2
    assert rows["Ann"].first_seen == local(PARIS, 2026, 3, 2, 8, 0)
    assert rows["Ann"].last_seen == local(PARIS, 2026, 3, 4, 16, 45)
    assert rows["Bob"].dates == [date(2026, 3, 1)], "an appearance is clipped to the range"
    assert rows["Bob"].first_seen == local(PARIS, 2026, 3, 1)
    assert rows["Cid"].days_present == 0 and rows["Cid"].first_seen is None


def test_a_range_across_midnight_and_a_dst_change(scene):
    # 2026-03-28 to 03-30 in New York time spans nothing special; in Paris it spans spring forward.
    seen(scene["Ann"], local(PARIS, 2026, 3, 28, 23, 50), local(PARIS, 2026, 3, 29, 0, 10))
    seen(scene["Ann"], local(PARIS, 2026, 3, 30, 0, 30))  # 22:30 UTC on the 29th
    summary = attendance_range(gallery=scene["gallery"], start=date(2026, 3, 28), end=date(2026, 3, 30), tz=PARIS)
    assert summary.end.astimezone(UTC) - summary.start.astimezone(UTC) == timedelta(hours=71)
    assert by_name(summary)["Ann"].dates == [date(2026, 3, 28), date(2026, 3, 29), date(2026, 3, 30)]
    utc = attendance_range(gallery=scene["gallery"], start=date(2026, 3, 28), end=date(2026, 3, 30),
                           tz=ZoneInfo("UTC"))
    assert by_name(utc)["Ann"].dates == [date(2026, 3, 28), date(2026, 3, 29)]


def test_a_range_ending_on_a_midnight_is_not_the_next_day(scene):
    seen(scene["Ann"], local(PARIS, 2026, 3, 3, 22, 0), local(PARIS, 2026, 3, 4, 0, 0))
    summary = attendance_range(gallery=scene["gallery"], start=date(2026, 3, 1), end=date(2026, 3, 3), tz=PARIS)
    assert by_name(summary)["Ann"].dates == [date(2026, 3, 3)]


def test_a_range_is_bounded(scene):
    start = date(2026, 1, 1)
    assert attendance_range(gallery=scene["gallery"], start=start, end=start + timedelta(days=MAX_RANGE_DAYS - 1),
                            tz=PARIS).days == MAX_RANGE_DAYS
    with pytest.raises(ValueError, match="at most"):
        attendance_range(gallery=scene["gallery"], start=start, end=start + timedelta(days=MAX_RANGE_DAYS), tz=PARIS)
    with pytest.raises(ValueError, match="before"):
        attendance_range(gallery=scene["gallery"], start=start, end=start - timedelta(days=1), tz=PARIS)


def test_a_misspelt_zone_setting_fails_the_system_check(settings):
    from django.core import checks

    from attendance.apps import check_time_zone

    assert check_time_zone in checks.registry.registry.get_checks(), "registered: `manage.py check` runs it"
    settings.ATTENDANCE_TIME_ZONE = "Europe/Pariss"
    assert [error.id for error in check_time_zone()] == ["attendance.E001"]
    settings.ATTENDANCE_TIME_ZONE = "America/New_York"
    assert check_time_zone() == []
