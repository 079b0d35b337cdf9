"""The /live/ page in a real Chromium against a real ASGI server (uvicorn: HTTP and WebSocket).

The camera is Chromium's fake device playing a Y4M clip of a test photo of Obama (not one of his
enrolment photos); the page must name him. A photo chosen on the page goes through
POST /api/faces/recognize/ and is drawn with its faces named. Screenshots go to test-artifacts/
(or $TEST_ARTIFACTS) for a person to look at."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from conftest import TEST

# Skips this module where Debian's chromium is missing.
from tests.browser.pages import PASSWORD, console, create_login, make_browser, page_server, screenshot
from tests.processes import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]  # committed: the server must see it


@pytest.fixture(scope="module")
def camera_clip(tmp_path_factory, engine) -> Path:
    """Four seconds of obama1.jpg held in front of the fake camera (Chromium loops the file)."""
    from face_engine.bench.y4m import build_y4m_clip

    path = tmp_path_factory.mktemp("camera") / "obama.y4m"
    build_y4m_clip(path, "people/test/obama1.jpg", width=640, height=480, fps=10, seconds=4,
                   detect=engine.detector.predict)
    return path


@pytest.fixture
def staff_login(db):
    return create_login("live-operator", is_staff=True)


@pytest.fixture
def server(enrolled, staff_login, settings, tmp_path):
    """uvicorn serving config.asgi on a free port, on this test's (committed) database."""
    with page_server(settings, tmp_path, "--ws-max-size", "16777216") as running:
        yield running


@pytest.fixture
def browser(tmp_path, camera_clip):
    driver = make_browser(tmp_path, camera_clip)
    try:
        yield driver
    finally:
        driver.quit()


def sign_in(driver, base: str, username: str) -> None:
    """Open /live/ signed out: the sign-in page, then back to the page."""
    driver.get(f"{base}/live/")
    assert driver.current_url == f"{base}/accounts/login/?next=/live/", driver.current_url
    driver.find_element(By.ID, "id_username").send_keys(username)
    driver.find_element(By.ID, "id_password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    # Either signed in (another page) or refused (the form again, with its error note).
    WebDriverWait(driver, 20).until(lambda d: d.current_url != f"{base}/accounts/login/?next=/live/"
                                    or d.find_elements(By.CSS_SELECTOR, "[role=alert]"))
    assert driver.current_url == f"{base}/live/", driver.find_element(By.TAG_NAME, "body").text[:500]


def item_texts(driver, element_id: str) -> list[str]:
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(li => li.textContent)", f"#{element_id} li")


def percentile(values: list[float], q: float) -> float:
    ranked = sorted(values)
    return ranked[min(len(ranked) - 1, round(q * (len(ranked) - 1)))]


def test_the_camera_names_the_person_in_view(server, browser, staff_login):
    from streams.routing import websocket_urlpatterns

    if not websocket_urlpatterns:
        pytest.skip("no WebSocket route yet (streams/routing.py): the live consumer is not there")
    base, process = server
    sign_in(browser, base, staff_login)
    browser.find_element(By.ID, "start").click()

    def named():
        assert process.alive(), f"uvicorn exited. {process.log_tail()}"
        # The list is drawn again on every result: read the item in one script, not through an
        # element reference that the next frame's redraw can make stale.
        found = browser.execute_script(
            "const li = document.querySelector('#names li.known');"
            "return li && {text: li.textContent, person: li.dataset.personId};")
        return found if found and found["text"] == "obama" else None

    started = time.monotonic()
    known = wait_for(named, timeout=60, what="#names showing obama", interval=0.5,
             detail=lambda: (f"names={item_texts(browser, 'names')} "
                             f"status={browser.find_element(By.ID, 'status').text!r} "
                             f"stats={browser.execute_script('return window.liveStats')} "
                             f"{console(browser)} {process.log_tail()}"))
    time_to_name = time.monotonic() - started
    assert known["person"], "a known face carries its person's id"

    # A full window of round trips (30 frames) for the figures, bounded.
    wait_for(lambda: browser.execute_script("return window.liveStats.roundTrips.length") >= 30, timeout=30,
             what="30 round trips measured", interval=0.5)
    stats = browser.execute_script("return window.liveStats")
    trips = stats["roundTrips"]
    assert stats["results"] >= len(trips) > 0
    assert "error" not in browser.find_element(By.ID, "status").get_attribute("class")
    print(f"\nlive page, 640x480 JPEG frames at 5 frames/s: named after {time_to_name:.1f} s; "
          f"round trip p50 {statistics.median(trips):.0f} ms, p95 {percentile(trips, 0.95):.0f} ms "
          f"over the last {len(trips)} frames; {stats['results']} results, {stats['dropped']} dropped by the "
          f"server, {stats['fps']} frames/s analysed")
    log = browser.find_element(By.ID, "log").text
    assert "obama appeared" in log, log

    # Staff: enrol the face in view into a chosen person; the server's answer is shown.
    Select(browser.find_element(By.ID, "person")).select_by_visible_text("obama")
    browser.find_element(By.ID, "enrol").click()
    wait_for(lambda: "Enrolled" in browser.find_element(By.ID, "enrol-result").text, timeout=30,
             what="the enrolment answered", interval=0.25,
             detail=lambda: f"{browser.find_element(By.ID, 'enrol-result').text!r} {process.log_tail()}")
    path = screenshot(browser, "live-page.png")
    print(f"screenshot: {path}")


def test_a_chosen_photo_is_drawn_with_every_face_named(server, browser, staff_login):
    base, process = server
    for name, kind in (("live.js", "javascript"), ("live.css", "css")):  # served by the app itself (WhiteNoise)
        response = requests.get(f"{base}/static/streams/{name}", timeout=10)
        assert response.status_code == 200 and kind in response.headers["Content-Type"], (name, response.headers)
    sign_in(browser, base, staff_login)
    browser.find_element(By.ID, "photo").send_keys(str(TEST / "obama_and_biden.jpg"))

    def both_named():
        names = item_texts(browser, "photo-names")
        return "obama" in names and "biden" in names

    wait_for(both_named, timeout=60, what="#photo-names listing obama and biden", interval=0.5,
             detail=lambda: (f"names={item_texts(browser, 'photo-names')} "
                             f"status={browser.find_element(By.ID, 'status').text!r} {console(browser)} "
                             f"{process.log_tail()}"))
    assert sorted(item_texts(browser, "photo-names")) == ["biden", "obama", "unknown"]
    canvas = browser.find_element(By.ID, "photo-canvas")
    assert canvas.is_displayed()
    assert browser.execute_script("const c = arguments[0]; return [c.width, c.height]", canvas) != [300, 150]
    path = screenshot(browser, "live-photo.png")
    print(f"\nscreenshot: {path}")

    # 320 px wide (a phone): nothing wider than the screen.
    browser.set_window_size(320, 800)
    overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    screenshot(browser, "live-narrow.png")
    assert overflow <= 0, f"the page is {overflow} px wider than a 320 px screen"


def test_anonymous_visitors_are_sent_to_the_login_page(client, user, staff):
    response = client.get("/live/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/live/"
    assert client.get(response["Location"]).status_code == 200  # a sign-in page for every user

    # A user who is not staff signs in there (the admin's form would refuse them).
    assert client.post("/accounts/login/?next=/live/", {"username": "reader", "password": "reader-pass-123",
                                                        "next": "/live/"})["Location"] == "/live/"
    client.force_login(user)
    page = client.get("/live/")
    assert page.status_code == 200
    assert "csrftoken" in page.cookies  # ensure_csrf_cookie: the page's POSTs need it
    assert b'id="photo"' in page.content and b'id="enrol"' not in page.content

    client.force_login(staff)
    assert b'id="enrol"' in client.get("/live/").content
