"""Attendance as CSV: one row per member, a header row, times in the sheet's time zone. Used by the
API (``?format=csv``) and the admin's "Export CSV"."""

from __future__ import annotations

import csv
import io
import re

from attendance.selectors import AttendanceDay, AttendanceRange
from attendance.serializers import iso

# A spreadsheet runs a cell starting with one of these as a formula (CSV injection): such a cell
# gets a leading quote, shown as text.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

DAY_HEADER = ["date", "person_id", "name", "external_id", "present", "first_seen", "last_seen", "cameras",
              "appearances"]
RANGE_HEADER = ["start", "end", "person_id", "name", "external_id", "days_present", "days_in_range", "dates",
                "first_seen", "last_seen"]


def safe_cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _csv(header: list[str], rows: list[list[object]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows([safe_cell(cell) for cell in row] for row in rows)
    return buffer.getvalue()


def day_csv(sheet: AttendanceDay) -> str:
    return _csv(DAY_HEADER, [
        [sheet.day.isoformat(), member.person.pk, member.person.name, member.person.external_id or "",
         "yes" if member.present else "no", iso(member.first_seen) or "", iso(member.last_seen) or "",
         "; ".join(member.cameras), member.appearances]
        for member in sheet.members
    ])


def range_csv(summary: AttendanceRange) -> str:
    return _csv(RANGE_HEADER, [
        [summary.start_date.isoformat(), summary.end_date.isoformat(), member.person.pk, member.person.name,
         member.person.external_id or "", member.days_present, summary.days,
         " ".join(day.isoformat() for day in member.dates), iso(member.first_seen) or "",
         iso(member.last_seen) or ""]
        for member in summary.members
    ])


def _slug(sheet: AttendanceDay | AttendanceRange) -> str:
    # Slugs are checked by forms and the API, not by the database: keep the header's filename plain.
    return re.sub(r"[^A-Za-z0-9_-]", "_", sheet.gallery.slug) or "gallery"


def day_filename(sheet: AttendanceDay) -> str:
    return f"attendance-{_slug(sheet)}-{sheet.day.isoformat()}.csv"


def range_filename(summary: AttendanceRange) -> str:
    return f"attendance-{_slug(summary)}-{summary.start_date.isoformat()}-{summary.end_date.isoformat()}.csv"
