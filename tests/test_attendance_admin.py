"""The admin's Attendance page: linked from the index, staff only, shows a day or a range and exports
the same CSV as the API."""

from __future__ import annotations

import csv
import io

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.test_attendance import PARIS, local, make_scene, seen

PAGE = "/admin/attendance/attendancesheet/"


@pytest.fixture
def scene(db):
    return make_scene()


@pytest.fixture
def sheet_scene(scene):
    seen(scene["Ann"], local(PARIS, 2026, 3, 29, 8, 0), local(PARIS, 2026, 3, 29, 8, 5), camera=scene["door"])
    seen(scene["Bob"], local(PARIS, 2026, 3, 30, 0, 30), camera=scene["hall"])
    return scene


def form(scene, **extra) -> dict:
    return {"gallery": scene["gallery"].pk, "start": "2026-03-29", "time_zone": "Europe/Paris", **extra}


def logged_in(**flags) -> Client:
    user = get_user_model().objects.create_user("someone", password="someone-pass-123", **flags)
    client = Client()
    client.force_login(user)
    return client


def test_the_index_links_the_page_for_staff_without_permissions(db):
    client = logged_in(is_staff=True)  # staff, but granted no model permission
    index = client.get("/admin/")
    assert index.status_code == 200 and f'href="{PAGE}"' in index.content.decode()
    page = client.get(PAGE)
    assert page.status_code == 200 and 'id="attendance-form"' in page.content.decode()
    assert 'href="/admin/attendance/attendancesheet/add/"' not in index.content.decode()


def test_non_staff_are_sent_to_the_login(db):
    response = logged_in().get(PAGE)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert Client().get(PAGE).status_code == 302


def test_a_day_renders_its_table(sheet_scene, browser):
    html = browser.get(PAGE, form(sheet_scene)).content.decode()
    assert 'id="attendance-table"' in html and "1 present, 2 absent" in html
    assert "From 2026-03-29T00:00:00+01:00 to 2026-03-30T00:00:00+02:00" in html
    assert "<td>Ann</td><td>S-Ann</td>" in html and "<td>08:00:00</td><td>08:05:00</td><td>door</td>" in html
    assert html.count('class="absent"') == 2


def test_a_range_renders_the_summary(sheet_scene, browser):
    html = browser.get(PAGE, form(sheet_scene, end="2026-03-31")).content.decode()
    assert "(3 days, Europe/Paris)" in html
    assert "<td>1 / 3</td><td>2026-03-29</td>" in html and "<td>1 / 3</td><td>2026-03-30</td>" in html


def test_export_csv_is_the_apis_file(sheet_scene, browser, user_client):
    response = browser.get(PAGE, form(sheet_scene, export="csv"))
    assert response.status_code == 200 and response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="attendance-class-1-2026-03-29.csv"'
    table = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(r["name"], r["present"], r["first_seen"]) for r in table] == [
        ("Ann", "yes", "2026-03-29T08:00:00+02:00"), ("Bob", "no", ""), ("Cid", "no", "")]
    api = user_client.get("/api/attendance/", {"gallery": "class-1", "date": "2026-03-29", "tz": "Europe/Paris",
                                               "format": "csv"})
    assert api.content == response.content

    summary = browser.get(PAGE, form(sheet_scene, end="2026-03-31", export="csv"))
    assert summary["Content-Disposition"] == 'attachment; filename="attendance-class-1-2026-03-29-2026-03-31.csv"'
    assert [r["days_present"] for r in csv.DictReader(io.StringIO(summary.content.decode()))] == ["1", "1", "0"]


@pytest.mark.parametrize(("changes", "message"), [
    ({"end": "2026-03-01"}, "Until must not be before the date."),
    ({"end": "2027-12-31"}, "A range is at most 366 days."),
    ({"time_zone": "Mars/Olympus"}, "Select a valid choice."),
    ({"start": "not a date"}, "Enter a valid date."),
])
def test_a_bad_form_shows_its_error_and_exports_nothing(sheet_scene, browser, changes, message):
    response = browser.get(PAGE, form(sheet_scene, export="csv", **changes))
    assert response.status_code == 200 and response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert message in html and 'id="attendance-table"' not in html


def test_nothing_else_is_routed(sheet_scene, browser):
    from events.models import Event

    event = Event.objects.first()
    assert browser.get(f"{PAGE}{event.pk}/change/").status_code == 404
    assert browser.get(f"{PAGE}add/").status_code == 404
