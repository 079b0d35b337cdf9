"""The /dashboard/ page in a real Chromium against a real ASGI server (uvicorn): events written by
this test (as a camera worker writes them, into the shared database) appear with their crops,
their closing and the cameras' states update live, and the filters reconnect the feed. A
screenshot goes to test-artifacts/ (or $TEST_ARTIFACTS) for a person to look at."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

# Skips this module where Debian's chromium is missing.
from tests.browser.pages import PASSWORD, console, create_login, page_server, screenshot
from tests.processes import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]  # committed: the server must see it


@pytest.fixture
def scene(db, settings, tmp_path):
    from people.models import Gallery
    from people.services import person_create
    from streams.models import Camera

    settings.MEDIA_ROOT = str(tmp_path / "media")
    create_login("watcher")
    gallery = Gallery.objects.create(name="Staff", slug="staff")
    door = Camera.objects.create(name="front door", source_url="rtsp://cam/1", gallery=gallery)
    hall = Camera.objects.create(name="hall", source_url="rtsp://cam/2")
    return {"gallery": gallery, "door": door, "hall": hall, "ann": person_create(name="Ann Example")}


@pytest.fixture
def server(scene, settings, tmp_path):
    with page_server(settings, tmp_path, FEED_POLL_SECONDS="0.1") as running:
        yield running


def write_event(*, uid=None, closed=False, **values):
    from django.utils import timezone

    from tests.test_events_api import upsert

    start = timezone.now()
    return upsert(uid=uid or uuid.uuid4(), first_seen=start, named_at=start + timedelta(milliseconds=180),
                  last_seen=start + timedelta(seconds=1), closed_at=start + timedelta(seconds=2) if closed else None,
                  **values)


def rows(driver) -> list[dict]:
    return driver.execute_script("""
        return [...document.querySelectorAll('#events li')].map(li => ({
            id: li.id, kind: li.className, phase: li.dataset.phase,
            name: li.querySelector('[data-role=name]').textContent,
            badge: li.querySelector('.badge').textContent,
            cropLoaded: !!li.querySelector('img') && li.querySelector('img').complete
                        && li.querySelector('img').naturalWidth > 0,
        }));""")


def test_the_dashboard_shows_events_and_cameras_as_they_happen(server, chromium, scene):
    from django.utils import timezone

    from streams.models import Camera

    base, process = server
    ann, door, hall = scene["ann"], scene["door"], scene["hall"]
    earlier = write_event(camera_id=door.pk, source_name=door.name, gallery_id=scene["gallery"].pk,
                          person_id=ann.pk, closed=True)

    chromium.get(f"{base}/dashboard/")
    assert chromium.current_url == f"{base}/accounts/login/?next=/dashboard/"
    chromium.find_element(By.ID, "id_username").send_keys("watcher")
    chromium.find_element(By.ID, "id_password").send_keys(PASSWORD)
    chromium.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(chromium, 20).until(lambda d: d.current_url == f"{base}/dashboard/")

    def detail():
        return (f"rows={rows(chromium)} status={chromium.find_element(By.ID, 'status').text!r} "
                f"{console(chromium)} {process.log_tail()}")

    def row(event) -> dict | None:
        return next((r for r in rows(chromium) if r["id"] == f"event-{event.pk}"), None)

    # The recent events come with the connection: Ann's earlier appearance, its crop shown.
    wait_for(lambda: (r := row(earlier)) and r["cropLoaded"], timeout=30, what="the earlier event with its crop",
             detail=detail)
    assert row(earlier)["name"] == "Ann Example" and row(earlier)["badge"] == "left"
    tiles = chromium.execute_script(
        "return [...document.querySelectorAll('#cameras li .name')].map(n => n.textContent)")
    assert sorted(tiles) == ["front door", "hall"]

    # Written now (as a camera worker would): a stranger in the hall appears, in view, with a crop.
    uid = uuid.uuid4()
    stranger = write_event(uid=uid, camera_id=hall.pk, source_name=hall.name)
    wait_for(lambda: (r := row(stranger)) and r["cropLoaded"], timeout=15, what="the new event", detail=detail)
    assert row(stranger)["name"] == "Unknown" and row(stranger)["badge"] == "in view"
    assert [r["id"] for r in rows(chromium)][0] == f"event-{stranger.pk}", "newest first"
    # It leaves: the same row says so.
    write_event(uid=uid, camera_id=hall.pk, source_name=hall.name, closed=True)
    wait_for(lambda: row(stranger)["badge"] == "left", timeout=15, what="the event closed", detail=detail)
    assert len(rows(chromium)) == 2

    # A camera's state changes: its tile follows.
    Camera.objects.filter(pk=door.pk).update(state=Camera.State.CONNECTED, fps_in=12.0, fps_analysed=5.0,
                                             status_at=timezone.now())
    wait_for(lambda: chromium.execute_script(
        f"return document.getElementById('camera-{door.pk}').dataset.state") == "connected",
        timeout=15, what="the camera tile connected", detail=detail)
    assert "5.0 of 12.0 fps" in chromium.find_element(By.ID, f"camera-{door.pk}").text

    # Filters reconnect the feed: unknown faces only.
    Select(chromium.find_element(By.ID, "kind")).select_by_value("unknown")
    wait_for(lambda: [r["id"] for r in rows(chromium)] == [f"event-{stranger.pk}"], timeout=15,
             what="only the unknown face listed", detail=detail)
    # The camera filter lists the cameras from the API; the door's feed has Ann's event only.
    Select(chromium.find_element(By.ID, "kind")).select_by_value("")
    WebDriverWait(chromium, 15).until(lambda d: len(Select(d.find_element(By.ID, "camera")).options) == 3)
    Select(chromium.find_element(By.ID, "camera")).select_by_visible_text("front door")
    wait_for(lambda: [r["id"] for r in rows(chromium)] == [f"event-{earlier.pk}"], timeout=15,
             what="only the front door's event listed", detail=detail)
    assert "error" not in chromium.find_element(By.ID, "status").get_attribute("class"), detail()
    path = screenshot(chromium, "dashboard.png")
    print(f"\ndashboard screenshot: {path}")
