"""The attendance API: JSON and CSV for a day and for a range, parameters checked one by one (a 400
naming each), authentication. Real database, events written through the pipeline's upsert."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta

import pytest

from attendance.selectors import local_today
from tests.test_attendance import NEW_YORK, PARIS, local, make_scene, seen

DAY = "/api/attendance/"
SUMMARY = "/api/attendance/summary/"


def ok(response) -> dict:
    assert response.status_code == 200, response.content
    return response.json()


def rows(response) -> list[dict]:
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    return list(csv.DictReader(io.StringIO(response.content.decode())))


@pytest.fixture
def scene(db):
    return make_scene()


@pytest.fixture
def day_scene(scene):
    """2026-03-29 in Paris (23 hours): Ann at the door and at a browser, Bob at 00:30 the next day."""
    seen(scene["Ann"], local(PARIS, 2026, 3, 29, 8, 0), local(PARIS, 2026, 3, 29, 8, 5), camera=scene["door"])
    seen(scene["Ann"], local(PARIS, 2026, 3, 29, 23, 30), source_name="browser:reader")
    seen(scene["Bob"], local(PARIS, 2026, 3, 30, 0, 30), camera=scene["hall"])
    seen(scene["Dan"], local(PARIS, 2026, 3, 29, 9, 0), camera=scene["door"])
    seen(None, local(PARIS, 2026, 3, 29, 9, 0), camera=scene["door"], kind="unknown")
    return scene


# ---- a day --------------------------------------------------------------------------------------

def test_a_day_as_json(day_scene, user_client):
    gallery = day_scene["gallery"]
    body = ok(user_client.get(DAY, {"gallery": gallery.slug, "date": "2026-03-29", "tz": "Europe/Paris"}))
    assert body["gallery"] == {"id": gallery.pk, "slug": "class-1", "name": "Class 1"}
    assert (body["date"], body["time_zone"], body["camera"]) == ("2026-03-29", "Europe/Paris", None)
    assert (body["day_start"], body["day_end"]) == ("2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00")
    assert (body["present"], body["absent"]) == (1, 2)
    ann, bob, cid = body["members"]
    assert ann == {"person": {"id": day_scene["Ann"].pk, "name": "Ann", "external_id": "S-Ann"}, "present": True,
                   "first_seen": "2026-03-29T08:00:00+02:00", "last_seen": "2026-03-29T23:30:05+02:00",
                   "cameras": ["browser:reader", "door"], "appearances": 2}
    assert bob["person"]["name"] == "Bob" and not bob["present"] and bob["first_seen"] is None
    assert cid["cameras"] == [] and cid["appearances"] == 0

    by_id = ok(user_client.get(DAY, {"gallery": gallery.pk, "date": "2026-03-30", "tz": "Europe/Paris"}))
    assert [m["present"] for m in by_id["members"]] == [False, True, False]
    assert by_id["members"][1]["first_seen"] == "2026-03-30T00:30:00+02:00"


def test_the_same_day_in_another_zone(day_scene, user_client):
    # 2026-03-29 08:00 Paris is 02:00 in New York; Bob's 00:30 Paris (22:30 UTC) is 18:30 there.
    body = ok(user_client.get(DAY, {"gallery": "class-1", "date": "2026-03-29", "tz": "America/New_York"}))
    members = {m["person"]["name"]: m for m in body["members"]}
    assert members["Ann"]["first_seen"] == "2026-03-29T02:00:00-04:00"
    assert members["Bob"]["first_seen"] == "2026-03-29T18:30:00-04:00"
    assert body["day_start"] == "2026-03-29T00:00:00-04:00"


def test_a_camera_by_id_or_name(day_scene, user_client):
    door = day_scene["door"]
    for ref in (door.pk, "door"):
        body = ok(user_client.get(DAY, {"gallery": "class-1", "date": "2026-03-29", "tz": "Europe/Paris",
                                        "camera": ref}))
        assert body["camera"] == {"id": door.pk, "name": "door"}
        assert body["members"][0]["cameras"] == ["door"] and body["members"][0]["appearances"] == 1


def test_defaults_are_today_in_the_configured_zone(scene, user_client, settings):
    settings.ATTENDANCE_TIME_ZONE = "America/New_York"
    now = datetime.now(UTC)
    seen(scene["Ann"], now - timedelta(seconds=1), now)
    before = local_today(NEW_YORK)
    body = ok(user_client.get(DAY, {"gallery": "class-1"}))
    after = local_today(NEW_YORK)
    assert body["time_zone"] == "America/New_York"
    assert ok(user_client.get(DAY, {"gallery": "class-1", "tz": ""}))["time_zone"] == "America/New_York"
    assert body["date"] in {before.isoformat(), after.isoformat()}
    if before == after:  # not run across midnight
        assert body["members"][0]["present"]
        assert body["members"][0]["last_seen"] == now.astimezone(NEW_YORK).isoformat(timespec="seconds")


def test_a_day_as_csv(day_scene, user_client):
    response = user_client.get(DAY, {"gallery": "class-1", "date": "2026-03-29", "tz": "Europe/Paris",
                                     "format": "csv"})
    assert response["Content-Disposition"] == 'attachment; filename="attendance-class-1-2026-03-29.csv"'
    table = rows(response)
    assert list(table[0]) == ["date", "person_id", "name", "external_id", "present", "first_seen", "last_seen",
                              "cameras", "appearances"]
    assert [r["name"] for r in table] == ["Ann", "Bob", "Cid"]
    assert table[0] == {"date": "2026-03-29", "person_id": str(day_scene["Ann"].pk), "name": "Ann",
                        "external_id": "S-Ann", "present": "yes", "first_seen": "2026-03-29T08:00:00+02:00",
                        "last_seen": "2026-03-29T23:30:05+02:00", "cameras": "browser:reader; door",
                        "appearances": "2"}
    assert (table[1]["present"], table[1]["first_seen"], table[1]["appearances"]) == ("no", "", "0")

    by_accept = user_client.get(DAY, {"gallery": "class-1", "date": "2026-03-29", "tz": "Europe/Paris"},
                                HTTP_ACCEPT="text/csv")
    assert by_accept.content == response.content


def test_csv_cells_cannot_be_formulas(scene, user_client):
    from streams.models import Camera

    scene["Ann"].name = "=HYPERLINK(\"http://evil\")"
    scene["Ann"].external_id = "+1"
    scene["Ann"].save()
    seen(scene["Ann"], local(PARIS, 2026, 3, 2, 8, 0), camera=Camera.objects.create(name="@cam", source_url="rtsp://x/1"))
    scene["Bob"].name = "-Bob"
    scene["Bob"].save()
    table = rows(user_client.get(DAY, {"gallery": "class-1", "date": "2026-03-02", "tz": "Europe/Paris",
                                       "format": "csv"}))
    cells = {r["person_id"]: r for r in table}
    ann, bob = cells[str(scene["Ann"].pk)], cells[str(scene["Bob"].pk)]
    assert (ann["name"], ann["external_id"], ann["cameras"]) == ("'=HYPERLINK(\"http://evil\")", "'+1", "'@cam")
    assert bob["name"] == "'-Bob"
    assert cells[str(scene["Cid"].pk)]["name"] == "Cid"


def test_csv_errors_are_json(scene, user_client):
    response = user_client.get(DAY, {"gallery": "class-1", "tz": "Mars/Olympus", "format": "csv"})
    assert response.status_code == 400 and response["Content-Type"] == "application/json"
    assert response.json()["error"]["details"]["tz"]


# ---- a range ------------------------------------------------------------------------------------

def test_a_range_as_json_and_csv(day_scene, user_client):
    params = {"gallery": "class-1", "start": "2026-03-28", "end": "2026-03-30", "tz": "Europe/Paris"}
    body = ok(user_client.get(SUMMARY, params))
    assert (body["start"], body["end"], body["days"], body["time_zone"]) == ("2026-03-28", "2026-03-30", 3,
                                                                             "Europe/Paris")
    assert (body["range_start"], body["range_end"]) == ("2026-03-28T00:00:00+01:00", "2026-03-31T00:00:00+02:00")
    ann, bob, cid = body["members"]
    assert ann == {"person": {"id": day_scene["Ann"].pk, "name": "Ann", "external_id": "S-Ann"},
                   "days_present": 1, "days_in_range": 3, "dates": ["2026-03-29"],
                   "first_seen": "2026-03-29T08:00:00+02:00", "last_seen": "2026-03-29T23:30:05+02:00"}
    assert (bob["days_present"], bob["dates"]) == (1, ["2026-03-30"])
    assert (cid["days_present"], cid["dates"], cid["last_seen"]) == (0, [], None)

    response = user_client.get(SUMMARY, {**params, "format": "csv"})
    assert response["Content-Disposition"] == 'attachment; filename="attendance-class-1-2026-03-28-2026-03-30.csv"'
    table = rows(response)
    assert list(table[0]) == ["start", "end", "person_id", "name", "external_id", "days_present", "days_in_range",
                              "dates", "first_seen", "last_seen"]
    assert [(r["name"], r["days_present"], r["days_in_range"], r["dates"]) for r in table] == [
        ("Ann", "1", "3", "2026-03-29"), ("Bob", "1", "3", "2026-03-30"), ("Cid", "0", "3", "")]


# ---- refusals -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "params", "field"), [
    (DAY, {}, "gallery"),
    (DAY, {"gallery": "class-1", "date": "2026-02-30"}, "date"),
    (DAY, {"gallery": "class-1", "date": "yesterday"}, "date"),
    (DAY, {"gallery": "class-1", "date": "0001-01-01"}, "date"),
    (DAY, {"gallery": "class-1", "date": "9999-12-31"}, "date"),
    (DAY, {"gallery": "class-1", "tz": "Mars/Olympus"}, "tz"),
    (DAY, {"gallery": "class-1", "tz": "../../etc/passwd"}, "tz"),
    (DAY, {"gallery": "class-1", "tz": "America"}, "tz"),
    (DAY, {"gallery": "class-1", "camera": "nowhere"}, "camera"),
    (DAY, {"gallery": "class-1", "camera": "99999999999999999999999"}, "camera"),
    (DAY, {"gallery": "class-1", "format": "xml"}, "format"),
    (SUMMARY, {"gallery": "class-1", "end": "2026-03-01"}, "start"),
    (SUMMARY, {"gallery": "class-1", "start": "2026-03-01"}, "end"),
    (SUMMARY, {"gallery": "class-1", "start": "2026-03-02", "end": "2026-03-01"}, "end"),
    (SUMMARY, {"gallery": "class-1", "start": "2026-01-01", "end": "2027-01-02"}, "end"),
    (SUMMARY, {"gallery": "class-1", "start": "2026-01-01", "end": "2026-01-02", "tz": "Nowhere"}, "tz"),
])
def test_bad_parameters_are_400_naming_them(scene, user_client, url, params, field):
    response = user_client.get(url, params)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert response.json()["success"] is False and error["code"] == "invalid"
    assert list(error["details"]) == [field] and error["message"].startswith(f"{field}:")


def test_a_full_year_is_a_range(scene, user_client):
    body = ok(user_client.get(SUMMARY, {"gallery": "class-1", "start": "2028-01-01", "end": "2028-12-31"}))
    assert body["days"] == 366 and body["time_zone"] == "UTC"


@pytest.mark.parametrize("url", [DAY, SUMMARY])
@pytest.mark.parametrize("gallery", ["nope", "424242", "99999999999999999999999"])
def test_an_unknown_gallery_is_400_as_elsewhere(scene, user_client, url, gallery):
    response = user_client.get(url, {"gallery": gallery, "start": "2026-03-01", "end": "2026-03-02"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_gallery"
    # The events list answers the same.
    assert user_client.get("/api/events/", {"gallery": "nope"}).json()["error"]["code"] == "unknown_gallery"


@pytest.mark.parametrize("url", [DAY, SUMMARY])
def test_anonymous_is_401_and_writes_are_405(scene, anon_client, user_client, url):
    params = {"gallery": "class-1", "start": "2026-03-01", "end": "2026-03-02"}
    response = anon_client.get(url, params)
    assert response.status_code == 401 and response.json()["error"]["code"] == "not_authenticated"
    assert anon_client.get(url, {**params, "format": "csv"}).status_code == 401
    assert user_client.post(url, params).status_code == 405
    assert user_client.get(url, params).status_code == 200


def test_a_gallery_without_members(db, user_client):
    from people.models import Gallery

    Gallery.objects.create(name="Empty", slug="empty")
    body = ok(user_client.get(DAY, {"gallery": "empty", "date": date(2026, 3, 2).isoformat()}))
    assert (body["present"], body["absent"], body["members"]) == (0, 0, [])
    table = rows(user_client.get(DAY, {"gallery": "empty", "date": "2026-03-02", "format": "csv"}))
    assert table == []
