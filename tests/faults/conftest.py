"""Fixtures of the fault tests."""

import pytest

from tests.processes import PrivatePostgres


@pytest.fixture
def cluster():
    """A throw-away PostgreSQL cluster of the test's own, to stop and start."""
    postgres = PrivatePostgres().init().start()
    try:
        yield postgres
    finally:
        postgres.remove()
