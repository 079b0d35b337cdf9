"""The authorization matrix, derived from the URL configuration: every route × method × identity
(anonymous, user, staff, inactive user, revoked token, expired token) is called and its answer
checked against the rule declared in tests/authz_rules.py. A route without a rule fails.

Path parameters are the ids of real rows (a gallery, a person with an enrolled photo, a camera,
an event with its crop and embedding, a webhook subscription and a delivery, a job, an audit
record), and every answer is searched for what must not reach the caller: photos, embeddings,
the audit trail and webhook secrets. Each cell runs in a savepoint rolled back after it, so a
staff DELETE does not change what the next cell sees."""

from __future__ import annotations

import base64
import io
import json
import re
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import Client, override_settings
from django.urls import URLResolver, get_resolver, path
from django.utils import timezone
from PIL import Image
from rest_framework.authtoken.models import Token

import config.urls
from conftest import MISC, TRAIN, upload
from tests.authz_rules import (
    ADMIN_PREFIX,
    ANYONE,
    METHODS,
    METRICS,
    OPEN,
    RULES,
    SIGNED_IN,
    STAFF,
    USER,
    WEBSOCKET_RULES,
)
from tests.ws_client import Communicator

OUTSIDE = "203.0.113.9"  # the matrix runs as a client from outside METRICS_ALLOWED_NETWORKS
IDENTITIES = ("anonymous", "user", "staff", "inactive", "revoked", "expired")
BAD = {"inactive", "revoked", "expired"}  # a credential that names nobody any more
REFUSED = {"401", "403", "405"}
ORIGIN = [(b"origin", b"http://testserver")]
AUDIT_MARKER = "audit-marker-7f3c9e"
JPEG, PNG = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"
EMBEDDING_KEYS = {"embedding", "embeddings", "encoding", "encodings", "face_encoding", "vector", "descriptor"}
LONG_BASE64 = re.compile(rb"[A-Za-z0-9+/]{600,}={0,2}")

# A URL configuration with one route more than the service's, to show an undeclared route is caught.
urlpatterns = [*config.urls.urlpatterns, path("api/unruled/", lambda request: None)]


# ---- the URL configuration -------------------------------------------------------------------

def url_routes(resolver: URLResolver | None = None, prefix: str = "") -> list[str]:
    """Every route of the URL configuration, as its pattern (``api/people/<int:pk>/``)."""
    routes = []
    for pattern in (resolver or get_resolver()).url_patterns:
        route = prefix + str(pattern.pattern)
        routes += url_routes(pattern, route) if isinstance(pattern, URLResolver) else [route]
    return routes


def undeclared(routes: list[str]) -> list[str]:
    return [route for route in routes if not route.startswith(ADMIN_PREFIX) and route not in RULES]


def websocket_routes() -> list[str]:
    """The WebSocket routes, from the ASGI application itself (through its middleware)."""
    from config.asgi import application

    app = application.application_mapping["websocket"]
    while not hasattr(app, "routes"):
        app = app.inner
    return [str(route.pattern) for route in app.routes]


def test_every_route_has_a_rule():
    routes = url_routes()
    missing = undeclared(routes)
    assert not missing, f"routes without a rule in tests/authz_rules.py: {missing}"
    stale = sorted(set(RULES) - set(routes))
    assert not stale, f"rules for routes the URL configuration no longer has: {stale}"
    assert sorted(WEBSOCKET_RULES) == sorted(websocket_routes())


@override_settings(ROOT_URLCONF=__name__)
def test_a_new_route_without_a_rule_is_named():
    assert undeclared(url_routes()) == ["api/unruled/"]


# ---- the rows and the identities ---------------------------------------------------------------

def jpeg_crop() -> bytes:
    with Image.open(MISC / "obama.jpg") as photo:
        crop = photo.convert("RGB").crop((0, 0, 200, 200)).resize((112, 112))
    buffer = io.BytesIO()
    crop.save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture
def rows(db, engine, settings, tmp_path):
    """One real row of everything a route's <pk> names; returns {name: pk} and the secrets."""
    import numpy as np

    from core.audit.services import audit_record
    from events.services import event_upsert
    from jobs.models import Job
    from people.models import Face
    from people.services import face_enroll, gallery_create, person_create
    from streams.models import Camera
    from webhooks.models import Delivery, Subscription

    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.TOKEN_RATE_PER_ADDRESS = "0"  # the rate limits have their own tests (tests/test_tokens.py)
    gallery = gallery_create(name="Door", slug="door")
    person = person_create(name="Obama", galleries=[gallery])
    outcome, = face_enroll(person=person, uploads=[upload(TRAIN / "obama" / "obama.jpg")])
    face = Face.objects.get(pk=outcome.face.pk)
    assert face.embedding and face.thumbnail
    camera = Camera.objects.create(name="door", source_url="rtsp://cam/1", gallery=gallery)
    start = timezone.now()
    event_embedding = np.random.default_rng(7).standard_normal(128).astype("<f4").tobytes()
    event = event_upsert(
        uid=uuid.uuid4(), source="camera", camera_id=camera.pk, source_name="door", user_id=None,
        gallery_id=gallery.pk, track_id=1, kind="known", person_id=person.pk, distance=0.3, confidence=0.9,
        threshold=0.6, first_seen=start, named_at=start, last_seen=start, closed_at=None, frames_seen=5,
        frames_recognised=5, face_box={"top": 0, "right": 100, "bottom": 100, "left": 0}, face_size=100,
        sharpness=30.0, embedding=event_embedding, crop_jpeg=jpeg_crop(),
    )
    webhook = Subscription.objects.create(name="hook", url="https://hooks.example.com/in")
    delivery = Delivery.objects.create(subscription=webhook, phase="ping", payload={"type": "ping"})
    job = Job.objects.create(kind=Job.Kind.ENCODE, face_ids=[face.pk], total=1)
    audit_record(actor=None, action="test.marker", target_type="test", target_ids=[0],
                 details={"marker": AUDIT_MARKER})
    ids = {"gallery": gallery.pk, "person": person.pk, "face": face.pk, "camera": camera.pk, "event": event.pk,
           "webhook": webhook.pk, "delivery": delivery.pk, "job": job.pk}
    ids.update(unknown_rows(np.frombuffer(event_embedding, dtype="<f4"), jpeg_crop()))
    ids["negative"] = negative_row(person, event)
    embeddings = [bytes(face.embedding), event_embedding]
    return ids, {
        "staff only": [AUDIT_MARKER.encode(), webhook.secret.encode()],
        "never": [form for e in embeddings for form in (base64.b64encode(e), e.hex().encode(), e)],
    }


def unknown_rows(embedding, crop: bytes) -> dict[str, int]:
    """An unknown face kept by a recognition (a sighting with its crop) and its cluster."""
    from unknowns.services import sighting_cluster, sighting_record

    sighting = sighting_record(embedding=embedding, crop_jpeg=crop, box={"top": 0, "right": 100, "bottom": 100,
                               "left": 0}, face_size=100, sharpness=30.0, source_name="api:matrix")
    return {"sighting": sighting.pk, "cluster": sighting_cluster(sighting).pk}


def negative_row(person, event) -> int:
    """A "not this person" correction kept: a negative face with its crop (corrections app)."""
    from django.core.files.base import ContentFile

    from corrections.models import NegativeFace
    from people.engine import embedding_model_id

    negative = NegativeFace(person=person, embedding=bytes(event.embedding), model=embedding_model_id(),
                            source="event", event=event)
    negative.crop.save("crop.jpg", ContentFile(jpeg_crop()))
    return negative.pk


@pytest.fixture
def identities(db):
    """identity → (user to sign in with a session or None, API key or None)."""
    from core.authentication import token_revoke

    make = get_user_model().objects.create_user
    reader = make("matrix-reader", password="reader-pass-123")
    staff = make("matrix-staff", password="staff-pass-123", is_staff=True)
    inactive = make("matrix-inactive", password="inactive-pass-123", is_active=False)
    revoked = make("matrix-revoked", password="revoked-pass-123")
    expired = make("matrix-expired", password="expired-pass-123")
    keys = {user: Token.objects.create(user=user).key for user in (reader, staff, inactive, revoked, expired)}
    token_revoke(user=revoked)
    Token.objects.filter(user=expired).update(created=timezone.now() - timedelta(days=3650))
    return {
        "anonymous": (None, None), "user": (reader, keys[reader]), "staff": (staff, keys[staff]),
        "inactive": (inactive, keys[inactive]), "revoked": (None, keys[revoked]), "expired": (None, keys[expired]),
    }


def client_for(identity, identities) -> Client:
    user, key = identities[identity]
    client = Client(REMOTE_ADDR=OUTSIDE, **({"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}))
    if user is not None:
        client.force_login(user)  # an inactive user's session names nobody (ModelBackend)
    return client


# ---- what each identity must get ---------------------------------------------------------------

def expected(level: str | None, identity: str) -> set[str]:
    if level is None:  # a method the route does not offer
        return REFUSED
    bad, anonymous = identity in BAD, identity == "anonymous"
    return {
        OPEN: {"ok"},
        ANYONE: {"401"} if bad else {"ok"},
        USER: {"401"} if bad or anonymous else {"ok"},
        STAFF: {"ok"} if identity == "staff" else {"403"} if identity == "user" else {"401"},
        SIGNED_IN: {"ok"} if identity in ("user", "staff") else {"login"},
        METRICS: {"403"} if anonymous else {"401"},  # an API token is not the metrics token
    }[level]


def outcome(response) -> str:
    code = response.status_code
    if code in (401, 403, 405) or code >= 500:
        return str(code)
    location = response.get("Location", "")
    if 300 <= code < 400 and "/login/" in location and "next=" in location:
        return "login"  # sent to sign in first (signing out also ends on the sign-in page, without next=)
    return "ok"


def body_of(response) -> bytes:
    if getattr(response, "streaming", False):  # the test client closes it once read
        return b"".join(response.streaming_content)
    return response.content


def json_leaks(value, where: str = "") -> list[str]:
    """Embedding-like things in a JSON answer: a key so named, or a list of 128 numbers."""
    found = []
    if isinstance(value, dict):
        for key, inner in value.items():
            if str(key).lower() in EMBEDDING_KEYS:
                found.append(f"key {key!r} at {where or '/'}")
            found += json_leaks(inner, f"{where}/{key}")
    elif isinstance(value, list):
        if len(value) == 128 and all(isinstance(v, int | float) for v in value):
            found.append(f"128 numbers at {where or '/'}")
        for index, inner in enumerate(value):
            found += json_leaks(inner, f"{where}/{index}")
    return found


def leaks(body: bytes, response, identity: str, refused: bool, secrets: dict) -> list[str]:
    found = [f"embedding bytes ({form[:12]!r}…)" for form in secrets["never"] if form in body]
    if LONG_BASE64.search(body):
        found.append("a long base64 run")
    if response.get("Content-Type", "").startswith("application/json") and body:
        found += json_leaks(json.loads(body))
    if identity != "staff":
        found += [f"staff-only data {secret[:12]!r}" for secret in secrets["staff only"] if secret in body]
    if refused and (body.startswith(JPEG) or body.startswith(PNG)):
        found.append("a picture")
    return found


def concrete(route: str, ids: dict) -> str:
    rule = RULES[route]
    return "/" + re.sub(r"<\w+:pk>", str(ids[rule.pk]) if rule.pk else "", route) + rule.query


def call(client: Client, method: str, url: str):
    if method in ("POST", "PUT", "PATCH"):
        return client.generic(method, url, b"{}", content_type="application/json")
    return client.generic(method, url)


# ---- the matrix --------------------------------------------------------------------------------

def test_every_route_method_and_identity_gets_what_its_rule_says(rows, identities):
    ids, secrets = rows
    mismatches, leaked, served = [], [], set()
    cells = 0
    for route in url_routes():
        if route.startswith(ADMIN_PREFIX):
            continue  # test_admin_is_staff_with_a_session_only
        url = concrete(route, ids)
        for method in METHODS:
            level = RULES[route].level(method)
            for identity in IDENTITIES:
                with transaction.atomic():
                    response = call(client_for(identity, identities), method, url)
                    body = body_of(response)
                    transaction.set_rollback(True)
                cells += 1
                got, want = outcome(response), expected(level, identity)
                where = f"{method} {url} as {identity}"
                if got not in want:
                    mismatches.append(f"{where}: expected {'/'.join(sorted(want))}, got {response.status_code} "
                                      f"{body[:150]!r}")
                if got == "ok" and method == "GET" and response.status_code != 200 and level != SIGNED_IN:
                    mismatches.append(f"{where}: allowed, but {response.status_code} {body[:150]!r}")
                leaked += [f"{where}: {what}" for what in leaks(body, response, identity, want != {"ok"}, secrets)]
                if got == "ok" and (body.startswith(JPEG) or AUDIT_MARKER.encode() in body):
                    served.add((route, identity))
    assert cells == len(RULES) * len(METHODS) * len(IDENTITIES)
    assert not mismatches, f"{len(mismatches)} of {cells} cells differ from tests/authz_rules.py:\n" + "\n".join(
        mismatches)
    assert not leaked, "\n".join(leaked)
    # The checks above could fail: the pictures and the audit trail do reach those who may see them.
    for route in ("api/faces/<int:pk>/image/", "api/faces/<int:pk>/thumbnail/", "api/events/<int:pk>/crop/"):
        assert {(route, "user"), (route, "staff")} <= served, route
    assert ("api/audit/", "staff") in served


# ---- the admin ---------------------------------------------------------------------------------

ADMIN_OPEN = {"admin/login/", "admin/logout/"}  # its sign-in page, and signing out (POST)


def admin_url(route: str) -> str:
    route = re.sub(r"\(\?P<app_label>[^)]*\)", "people", route).replace("^", "").replace("$", "")
    return "/" + re.sub(r"<(\w+:)?\w+>", "1", route)


def test_admin_is_staff_with_a_session_only(identities):
    """Every admin page by GET: anyone but signed-in staff is sent to the admin's sign-in page (an
    API token does not count there); staff get past it (the model permissions then apply)."""
    routes = [r for r in url_routes() if r.startswith(ADMIN_PREFIX) and r not in ADMIN_OPEN]
    assert len(routes) > 50
    wrong = []
    for route in routes:
        url = admin_url(route)
        for identity in IDENTITIES:
            response = client_for(identity, identities).get(url)
            got = outcome(response)
            if (identity == "staff") == (got == "login") or got.startswith("5"):
                wrong.append(f"GET {url} as {identity}: {response.status_code} {response.get('Location', '')}")
            if identity != "staff" and got == "login":
                assert response["Location"].startswith("/admin/login/"), response["Location"]
    assert not wrong, "\n".join(wrong)


# ---- the WebSockets ------------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)  # the consumers read the database from their own threads
def test_websockets_refuse_at_connect_whoever_the_api_refuses(identities):
    from asgiref.sync import async_to_sync

    from config.asgi import application

    async def first_message(route: str, key: str | None) -> tuple[dict, dict | None]:
        query = f"?token={key}" if key else ""
        communicator = Communicator(application, f"/{route}{query}", headers=ORIGIN)
        assert await communicator.connect(timeout=10)
        message = await communicator.receive_json_from(timeout=10)
        close = await communicator.receive_output(timeout=10) if message.get("type") == "error" else None
        if close is None:
            await communicator.disconnect()
        else:
            await communicator.wait(timeout=10)
        return message, close

    wrong = []
    for route, level in WEBSOCKET_RULES.items():
        assert level == USER
        for identity in IDENTITIES:
            message, close = async_to_sync(first_message)(route, identities[identity][1])
            if identity in ("user", "staff"):
                ok = message.get("type") != "error"
            else:
                code = "not_authenticated" if identity == "anonymous" else "authentication_failed"
                ok = message.get("code") == code and close == {"type": "websocket.close", "code": 4401}
            if not ok:
                wrong.append(f"{route} as {identity}: {message} {close}")
    assert not wrong, "\n".join(wrong)


def test_the_leak_detector_finds_what_it_looks_for():
    """The matrix's search would see an embedding (bytes, base64, hex, a list of numbers, a field)
    or a staff-only secret in an answer, and a picture in a refusal."""
    from django.http import HttpResponse, JsonResponse

    vector = bytes(range(256)) * 2
    secrets = {"never": [base64.b64encode(vector), vector.hex().encode(), vector], "staff only": [b"s3cret"]}
    cases = [
        JsonResponse({"face": {"embedding": None}}),
        JsonResponse({"values": [0.5] * 128}),
        JsonResponse({"blob": base64.b64encode(vector).decode()}),
        JsonResponse({"blob": base64.b64encode(bytes(512 * [7])).decode()}),
        HttpResponse(vector.hex()),
        HttpResponse(b"note: s3cret"),
        HttpResponse(JPEG + b"rest of a picture", content_type="image/jpeg"),
    ]
    for response in cases:
        assert leaks(response.content, response, "user", True, secrets), response.content[:60]
    assert not leaks(b'{"id": 1}', JsonResponse({"id": 1}), "user", True, secrets)
    assert not leaks(b"note: s3cret", HttpResponse(b"note: s3cret"), "staff", False, secrets)
