"""The HTML pages under their Content-Security-Policy in a real Chromium: the pages still work (the
Swagger page draws the API's operations, the admin signs in and lists its apps, the dashboard
connects) and Chromium reports no CSP violation; an injected inline script does not run."""

from __future__ import annotations

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

# Skips this module where Debian's chromium is missing.
from tests.browser.pages import PASSWORD, console, create_login, page_server
from tests.processes import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def server(db, settings, tmp_path):
    create_login("csp-admin", is_staff=True, is_superuser=True)
    with page_server(settings, tmp_path) as running:
        yield running


def csp_violations(driver) -> list[str]:
    return [line for line in console(driver).splitlines() if "Content Security Policy" in line]


def test_the_pages_work_under_their_policy(server, chromium):
    base, process = server
    for path in ("/api/docs/", "/accounts/login/", "/admin/login/"):
        headers = requests.get(f"{base}{path}", timeout=10).headers
        assert "script-src 'self'" in headers["Content-Security-Policy"], (path, headers)
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert "Content-Security-Policy" not in requests.get(f"{base}/api/health/", timeout=10).headers

    # Swagger UI loads its setup from a URL and draws every operation.
    chromium.get(f"{base}/api/docs/")
    wait_for(lambda: len(chromium.find_elements(By.CSS_SELECTOR, ".opblock")) > 20, timeout=30,
             what="Swagger UI listing the operations", detail=lambda: console(chromium))
    # The admin: sign in, the index lists the apps.
    chromium.get(f"{base}/admin/login/")
    chromium.find_element(By.ID, "id_username").send_keys("csp-admin")
    chromium.find_element(By.ID, "id_password").send_keys(PASSWORD)
    chromium.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    WebDriverWait(chromium, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#content-main .app-events"))
    # The dashboard connects its WebSocket ('self' covers ws: in CSP 3).
    chromium.get(f"{base}/dashboard/")
    wait_for(lambda: chromium.find_element(By.ID, "status").text.startswith("Live"), timeout=20,
             what="the dashboard's feed connected", detail=lambda: console(chromium))
    assert csp_violations(chromium) == [], console(chromium)

    # Script injected into a page does not run: the policy refuses inline script.
    chromium.execute_script("""
        const s = document.createElement('script');
        s.textContent = 'window.injected = true';
        document.body.appendChild(s);""")
    assert chromium.execute_script("return window.injected === true") is False
    assert csp_violations(chromium), "Chromium reported the refused inline script"
