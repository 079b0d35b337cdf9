"""Fixtures of the browser tests."""

import pytest


@pytest.fixture
def chromium(tmp_path):
    """Debian's Chromium, headless, without a camera clip (tests.browser.pages.make_browser)."""
    from tests.browser.pages import make_browser

    driver = make_browser(tmp_path, None)
    try:
        yield driver
    finally:
        driver.quit()
