"""Two real server processes on one database never disagree for longer than one request.

Process A is this test process (Django's test client); process B is `manage.py runserver` in a
subprocess on the same database and media folder. Each keeps its own in-memory index.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from conftest import MISC, TEST, TRAIN, database_env, make_client, upload

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(params=["locmem", "file", pytest.param("redis", marks=pytest.mark.services)])
def cache_url(request, tmp_path, settings):
    """locmem: each process checks the database version; file and redis: a cache both processes share."""
    if request.param == "locmem":
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
        return "locmem://"
    if request.param == "redis":
        from django.core.cache import cache

        url = "redis://127.0.0.1:6379/13"
        settings.CACHES = {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": url}}
        cache.clear()
        return url
    location = tmp_path / "shared-cache"
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                                   "LOCATION": str(location)}}
    return f"file://{location}"


@pytest.fixture
def server_b(settings, cache_url, engine):
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.base",
        **database_env(settings),
        "MEDIA_ROOT": settings.MEDIA_ROOT,
        "CACHE_URL": cache_url,
        "THROTTLE_USER": "100000/minute",
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1",
    }
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{base}/api/health/", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"server B did not start: {process.stderr.read().decode()[-2000:]}")
        time.sleep(0.3)
    yield base
    process.terminate()
    process.wait(timeout=10)


def _recognize_b(base: str, token: str, path: Path) -> list[str]:
    with path.open("rb") as handle:
        response = requests.post(f"{base}/api/faces/recognize/", files={"image": handle},
                                 headers={"Authorization": f"Bearer {token}"}, timeout=60)
    assert response.status_code == 200, response.text
    return [face["label"] for face in response.json()["faces"]]


def test_writes_in_one_process_are_seen_by_the_other_on_the_next_request(server_b):
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    staff = get_user_model().objects.create_user("ops", password="x", is_staff=True)
    token = Token.objects.create(user=staff).key
    client_a = make_client(staff)

    obama = client_a.post("/api/people/", {"name": "obama"}, format="json").json()
    assert client_a.post(f"/api/people/{obama['id']}/faces/",
                         {"image": upload(TRAIN / "obama" / "obama.jpg")}).status_code == 201
    assert _recognize_b(server_b, token, MISC / "obama_small.jpg") == ["obama"]

    # An enrolment through B is visible to A on A's next request, and vice versa.
    biden = requests.post(f"{server_b}/api/people/", json={"name": "biden"},
                          headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
    with (TRAIN / "biden" / "biden.jpg").open("rb") as handle:
        enrolled = requests.post(f"{server_b}/api/people/{biden['id']}/faces/", files={"image": handle},
                                 headers={"Authorization": f"Bearer {token}"}, timeout=60)
    assert enrolled.status_code == 201, enrolled.text
    labels_a = [f["label"] for f in client_a.post("/api/faces/recognize/",
                                                  {"image": upload(TEST / "obama_and_biden.jpg")}).json()["faces"]]
    assert sorted(labels_a) == ["biden", "obama", "unknown"]

    # A delete in A is never returned by B after the delete's response.
    assert client_a.delete(f"/api/people/{obama['id']}/").status_code == 204
    assert _recognize_b(server_b, token, MISC / "obama_small.jpg") == ["unknown"]
    assert sorted(_recognize_b(server_b, token, TEST / "obama_and_biden.jpg")) == ["biden", "unknown", "unknown"]
