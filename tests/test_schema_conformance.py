"""schemathesis against the service's own OpenAPI schema (/api/schema/), in process through WSGI
on the test database: every operation, as staff, as a plain user and anonymously, with generated
valid and invalid input. Checks: never a 5xx, every answer's status code, content type and body
are the ones the schema documents (errors in the project's error shape).

Bounded for CI: a fixed number of examples per operation, derandomized (the same cases every run).
SCHEMATHESIS_EXAMPLES raises it for a longer local run.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "20"))
# Left out: negative_data_rejection. DRF takes a blank optional query parameter (?until=) as absent,
# by design (HTML forms send empty fields), which that check counts as accepting invalid input on
# every list with an optional date, number or boolean filter. Invalid input is still generated
# (the negative mode) and must still get a documented status, never a 5xx.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _load_schema():
    from django.core.wsgi import get_wsgi_application

    loaded = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())
    loaded.config.generation.update(max_examples=EXAMPLES, deterministic=True, modes=["positive", "negative"])
    return loaded


schema = _load_schema()


@pytest.fixture
def rows(db, staff, user):
    """A few rows so that small ids exist: generated ids then reach real objects, not only 404s.
    Django's handler closes the connection around each request, which would end the test's
    transaction: disconnected for the test, as Django's own test client does."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    from people.services import gallery_create, person_create

    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)

    gallery = gallery_create(name="Staff", slug="staff")
    for name in ("Ada", "Grace"):
        person_create(name=name, galleries=[gallery])
    yield
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


def _bearer(user) -> dict:
    from rest_framework.authtoken.models import Token

    return {"Authorization": f"Bearer {Token.objects.get_or_create(user=user)[0].key}"}


CONFORMANCE = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                       suppress_health_check=list(HealthCheck))


@schema.parametrize()
@CONFORMANCE
def test_conforms_as_staff(case, rows, staff):
    case.call_and_validate(headers=_bearer(staff), checks=CHECKS)


@schema.parametrize()
@CONFORMANCE
def test_conforms_as_user(case, rows, user):
    case.call_and_validate(headers=_bearer(user), checks=CHECKS)


@schema.parametrize()
@CONFORMANCE
def test_conforms_anonymously(case, rows):
    case.call_and_validate(checks=CHECKS)


def test_every_operation_documents_its_refusals():
    """The declarations the run above relies on: each operation lists throttling (429) in the
    error shape, and each one behind authentication lists 401 and 403 (a schema that forgets them
    would pass the run only while no example hits them)."""
    raw = schema.raw_schema
    operations = [(path, method, op) for path, item in raw["paths"].items() for method, op in item.items()]
    assert len(operations) >= 45
    for path, method, op in operations:
        if path == "/api/health/":
            continue  # never throttled; its 503 is the health body
        responses = op["responses"]
        assert responses["429"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}, \
            (method, path)
        if {"tokenAuth": []} in op.get("security", []):
            assert {"401", "403"} <= set(responses), (method, path)
