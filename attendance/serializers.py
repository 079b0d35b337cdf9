"""Query parameters of the attendance API (each bad value a 400 naming it) and the JSON it answers."""

from __future__ import annotations

from datetime import datetime

from rest_framework import serializers

from attendance.selectors import (
    MAX_DATE,
    MAX_RANGE_DAYS,
    MIN_DATE,
    AttendanceDay,
    AttendanceRange,
    zone_by_name,
)
from core.parsers import OneValuePerField
from people.models import Person
from streams.models import Camera
from streams.selectors import camera_by_ref


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 to the second, with the offset of the zone the moment is expressed in."""
    return moment.isoformat(timespec="seconds") if moment is not None else None


class _SheetQuerySerializer(OneValuePerField, serializers.Serializer):
    gallery = serializers.CharField(max_length=200, help_text="Gallery id or slug.")
    tz = serializers.CharField(required=False, max_length=100,
                               help_text="IANA time zone (default: ATTENDANCE_TIME_ZONE).")
    camera = serializers.CharField(required=False, max_length=200,
                                   help_text="Camera id or name: only its events count.")

    def validate_tz(self, value: str):
        zone = zone_by_name(value)
        if zone is None:
            raise serializers.ValidationError(f"Unknown time zone {value.strip()!r}; use an IANA name such as "
                                              "'Europe/Paris'.")
        return zone

    def validate_camera(self, value: str) -> Camera:
        camera = camera_by_ref(value)
        if camera is None:
            raise serializers.ValidationError(f"No camera with id or name {value.strip()!r}.")
        return camera


def _check_date(value):
    if not MIN_DATE <= value <= MAX_DATE:
        raise serializers.ValidationError(f"Dates go from {MIN_DATE.isoformat()} to {MAX_DATE.isoformat()}.")
    return value


class DayQuerySerializer(_SheetQuerySerializer):
    date = serializers.DateField(required=False, help_text="YYYY-MM-DD (default: today in the time zone).")

    def validate_date(self, value):
        return _check_date(value)


class RangeQuerySerializer(_SheetQuerySerializer):
    start = serializers.DateField(help_text="First day, YYYY-MM-DD.")
    end = serializers.DateField(help_text=f"Last day (included), YYYY-MM-DD; at most {MAX_RANGE_DAYS} days.")

    def validate_start(self, value):
        return _check_date(value)

    def validate_end(self, value):
        return _check_date(value)

    def validate(self, data: dict) -> dict:
        start, end = data["start"], data["end"]
        if end < start:
            raise serializers.ValidationError({"end": ["end must not be before start."]})
        if (end - start).days + 1 > MAX_RANGE_DAYS:
            raise serializers.ValidationError({"end": [f"A range is at most {MAX_RANGE_DAYS} days."]})
        return data


# ---- answers -------------------------------------------------------------------------------------

def _person(person: Person) -> dict:
    return {"id": person.pk, "name": person.name, "external_id": person.external_id}


def _head(sheet: AttendanceDay | AttendanceRange) -> dict:
    gallery, camera = sheet.gallery, sheet.camera
    return {
        "gallery": {"id": gallery.pk, "slug": gallery.slug, "name": gallery.name},
        "camera": {"id": camera.pk, "name": camera.name} if camera is not None else None,
        "time_zone": sheet.tz.key,
    }


def day_payload(sheet: AttendanceDay) -> dict:
    return {
        **_head(sheet),
        "date": sheet.day.isoformat(),
        "day_start": iso(sheet.start),
        "day_end": iso(sheet.end),
        "present": sheet.present,
        "absent": sheet.absent,
        "members": [
            {"person": _person(member.person), "present": member.present, "first_seen": iso(member.first_seen),
             "last_seen": iso(member.last_seen), "cameras": member.cameras, "appearances": member.appearances}
            for member in sheet.members
        ],
    }


def range_payload(summary: AttendanceRange) -> dict:
    return {
        **_head(summary),
        "start": summary.start_date.isoformat(),
        "end": summary.end_date.isoformat(),
        "range_start": iso(summary.start),
        "range_end": iso(summary.end),
        "days": summary.days,
        "members": [
            {"person": _person(member.person), "days_present": member.days_present, "days_in_range": summary.days,
             "dates": [day.isoformat() for day in member.dates], "first_seen": iso(member.first_seen),
             "last_seen": iso(member.last_seen)}
            for member in summary.members
        ],
    }
