"""No secret and no biometric data in the logs: a whole run of the service's paths that touch them
— a password signing in for a token, the token used, faces enrolled and recognised (embeddings),
a webhook with its secret delivered to a receiver that fails, a camera whose URL carries a
password failing to connect, MQTT with a password — with every logger at DEBUG captured through
the project's own JSON formatter, then the captured text searched for each secret and for the
embeddings in the forms a log could show them (base64, hex, the floats)."""

from __future__ import annotations

import base64
import http.server
import logging
import socket
import threading
import uuid

import numpy as np
import pytest

from conftest import TEST, enrol_folder, make_client, upload
from tests.processes import wait_for

pytestmark = [pytest.mark.django_db(transaction=True)]

PASSWORD = "s3cret-Pass-" + uuid.uuid4().hex[:8]
WEBHOOK_SECRET = "whsec-" + uuid.uuid4().hex
CAMERA_PASSWORD = "campass" + uuid.uuid4().hex[:10]
MQTT_PASSWORD = "mqttpass" + uuid.uuid4().hex[:10]


@pytest.fixture
def captured():
    """Every record of every logger, at DEBUG, formatted as the service writes them (JSON lines)."""
    from core.logging import JsonFormatter

    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Keep(level=logging.DEBUG)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


class FailingReceiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(500)
        self.end_headers()
        self.wfile.write(b"receiver down")

    def log_message(self, *args):
        pass


def embedding_forms(blob: bytes) -> list[str]:
    vector = np.frombuffer(blob, dtype="<f4")
    return [base64.b64encode(blob).decode()[:40], blob.hex()[:40], repr(float(vector[0]))[:10],
            f"{float(vector[0]):.6f}", str(vector[:3])[:30]]


def test_no_secret_and_no_embedding_reaches_the_logs(engine, settings, captured, tmp_path):
    from django.contrib.auth import get_user_model

    from people.models import Face
    from streams.models import Camera
    from tests.test_camera_worker import run_worker
    from webhooks import backends
    from webhooks.models import Delivery

    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.WEBHOOK_ALLOW_PRIVATE = True
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    settings.WEBHOOK_BACKOFF_SECONDS = 0.05
    settings.MQTT_HOST, settings.MQTT_PORT, settings.MQTT_PASSWORD = "127.0.0.1", 1, MQTT_PASSWORD  # nobody there
    settings.MQTT_USERNAME = "facerec"
    user = get_user_model().objects.create_user("operator", password=PASSWORD, is_staff=True)

    # A password exchanged for a token (and a wrong one refused), then the token used.
    anonymous = make_client()
    assert anonymous.post("/api/auth/token/", {"username": "operator", "password": "wrong"}).status_code in (400, 401)
    answer = anonymous.post("/api/auth/token/", {"username": "operator", "password": PASSWORD})
    assert answer.status_code == 200, answer.content
    token = answer.json()["token"]
    client = make_client(user)

    # Faces enrolled and recognised: embeddings computed, stored, searched.
    people = enrol_folder()
    answer = client.post("/api/faces/recognize/", {"image": upload(TEST / "obama1.jpg")}, format="multipart")
    assert answer.status_code == 200 and answer.json()["faces"][0]["label"] == "obama"
    embeddings = [bytes(f.embedding) for f in Face.objects.filter(embedding__isnull=False)[:3]]

    # A webhook with its secret, delivered to a receiver that answers 500 (errors are logged).
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FailingReceiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    answer = client.post("/api/webhooks/", {"name": "door", "url": f"http://127.0.0.1:{receiver.server_port}/in",
                                            "secret": WEBHOOK_SECRET, "kinds": ["known", "unknown"]}, format="json")
    assert answer.status_code == 201, answer.content

    # A camera whose URL carries a password, and whose source never answers: the worker logs its failures.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        camera = Camera.objects.create(
            name="gate", source_url=f"http://admin:{CAMERA_PASSWORD}@127.0.0.1:{silent.getsockname()[1]}/v.mjpg")
        run_worker(lambda: "no answer" in Camera.objects.get(pk=camera.pk).last_error, worker_id="hygiene")

    # An event (as the camera pipeline writes it): MQTT (no broker) and the webhook consume it.
    from tests.test_events_api import upsert

    upsert(person_id=people["obama"].pk, camera_id=camera.pk, source_name="gate")
    wait_for(lambda: Delivery.objects.filter(state="failed").exists(), timeout=30, what="the delivery given up")
    backends.wait_idle(10)
    receiver.shutdown()
    from events import mqtt

    mqtt.stop(timeout=1)

    text = "\n".join(captured)
    assert len(captured) > 20, "the run logged (requests, enrolment, the worker, the webhook)"
    assert "receiver down" in text or "HTTP 500" in text, "the webhook's failure was logged"
    assert "gate" in text and "no answer" in text, "the camera's failures were logged (its URL redacted)"
    for secret in (PASSWORD, token, WEBHOOK_SECRET, CAMERA_PASSWORD, MQTT_PASSWORD, settings.SECRET_KEY):
        assert secret not in text, f"a secret ({secret[:6]}…) is in the logs"
    for blob in embeddings:
        for form in embedding_forms(blob):
            assert form not in text, f"an embedding ({form}) is in the logs"
