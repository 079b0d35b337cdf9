"""What the browser tests share: Debian's Chromium driven by Selenium (the module is skipped where
it is missing), a uvicorn serving the pages on the test's committed database, sign-in users, the
page's console and checked screenshots (to test-artifacts/, or $TEST_ARTIFACTS)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.processes import BIN, ROOT, Process, free_port, service_env, wait_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip(f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}): "
                "apt-get install chromium chromium-driver", allow_module_level=True)

from selenium import webdriver  # noqa: E402 - only once the browser is known to be there

PASSWORD = "live-page-pass-123"
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS") or ROOT / "test-artifacts")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def create_login(username: str, **flags) -> str:
    """A user who signs in with PASSWORD on the server (``flags``: is_staff, is_superuser)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    # The test settings hash with MD5 (speed), which the server's settings do not accept: hash the way it does.
    password = PBKDF2PasswordHasher().encode(PASSWORD, PBKDF2PasswordHasher().salt())
    get_user_model().objects.create(username=username, password=password, **flags)
    return username


@contextlib.contextmanager
def page_server(settings, log_dir: Path, *arguments: str, **variables: str) -> Iterator[tuple[str, Process]]:
    """uvicorn serving config.asgi (DEBUG on: static files from the apps) on a free port, on this
    test's committed database and media; yields its base URL and process, stopped afterwards."""
    port = free_port()
    env = service_env(settings, DJANGO_SETTINGS_MODULE="config.settings.base", DEBUG="true",
                      ALLOWED_HOSTS="127.0.0.1,localhost", LOG_LEVEL="WARNING", LOG_FORMAT="text", **variables)
    args = [str(BIN / "uvicorn"), "config.asgi:application", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning", *arguments]
    process = Process("uvicorn", args, env, Path(log_dir) / "uvicorn.log")
    base = f"http://127.0.0.1:{port}"

    def answers():
        assert process.alive(), f"uvicorn exited. {process.log_tail()}"
        try:
            return requests.get(f"{base}/api/health/", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_for(answers, timeout=60, what="uvicorn answering", detail=process.log_tail)
        yield base, process
    finally:
        process.stop(timeout=10)


def make_browser(tmp_path: Path, clip: Path | None) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-background-networking", "--disable-gpu",
                     "--disable-dev-shm-usage", "--no-first-run", "--disable-component-update", "--disable-sync",
                     "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                     f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1280,1000"):
        options.add_argument(argument)
    if clip is not None:
        options.add_argument(f"--use-file-for-fake-video-capture={clip}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the page's console, for failures
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    return driver


def console(driver) -> str:
    try:
        return "\n".join(f"{e['level']} {e['message']}" for e in driver.get_log("browser"))
    except Exception as exc:  # noqa: BLE001 - a diagnostic only; the failure it explains matters more
        return f"(no console log: {exc})"


def screenshot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    assert driver.save_screenshot(str(path)), path
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), f"{path} is not a PNG"
    from PIL import Image

    with Image.open(path) as image:
        size = image.size
    ratio, width, height = driver.execute_script(
        "return [window.devicePixelRatio, window.innerWidth, window.innerHeight]")
    assert size == (round(width * ratio), round(height * ratio)), (size, width, height, ratio)
    return path
