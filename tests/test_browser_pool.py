"""The browser streams' thread pool (streams/browser.py) treats each call as a request: the
thread's database connection goes back at the end, so a pool thread never holds one for its life
(on PostgreSQL that would keep it from the connection pool, and the test database from being dropped)."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.db import connection

from streams import browser

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def one_thread(monkeypatch):
    """A pool of one thread, so consecutive calls run on the same thread."""
    monkeypatch.setattr(browser, "pool_size", lambda: 1)
    monkeypatch.setattr(browser, "_pool", None)
    yield browser.inference_pool()
    browser.inference_pool().shutdown(wait=True)


def test_a_call_gives_its_thread_connection_back(one_thread, user):
    def query_and_report() -> tuple[int, bool]:
        count = get_user_model().objects.count()
        return count, connection.connection is not None

    count, open_during = async_to_sync(browser.run_blocking)(query_and_report)
    assert count == 1 and open_during
    # The same (only) thread, outside run_blocking: nothing left open.
    assert one_thread.submit(lambda: connection.connection is None).result(timeout=10)


def test_a_failing_call_gives_it_back_too(one_thread, user):
    def query_and_fail() -> None:
        get_user_model().objects.count()
        raise RuntimeError("frame could not be analysed")

    with pytest.raises(RuntimeError, match="analysed"):
        async_to_sync(browser.run_blocking)(query_and_fail)
    assert one_thread.submit(lambda: connection.connection is None).result(timeout=10)
