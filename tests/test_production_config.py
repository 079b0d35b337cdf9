"""Production configuration: settings from DATABASE_URL / REDIS_URL / CELERY_*, a clean
`check --deploy`, refusal of a missing secret, and `make serve` (gunicorn + WhiteNoise) on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.core.exceptions import ImproperlyConfigured

from config.env import postgres_from_url, redacted, sqlite_path_from_url

ROOT = Path(__file__).resolve().parent.parent
SECRET = secrets.token_urlsafe(50)
# What a production deployment sets; the database, cache and broker variables of this test run are
# dropped so each test says exactly what it configures.
PRODUCTION = {"DJANGO_SETTINGS_MODULE": "config.settings.production", "SECRET_KEY": SECRET,
              "ALLOWED_HOSTS": "faces.example.com,127.0.0.1"}
DROPPED = {"DATABASE_URL", "REDIS_URL", "CACHE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "SQLITE_PATH",
           "SECRET_KEY", "ALLOWED_HOSTS", "DJANGO_SETTINGS_MODULE", "LOG_FORMAT", "DEBUG"}


def environment(tmp_path: Path, **variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DROPPED}
    return {**env, "SQLITE_PATH": str(tmp_path / "db.sqlite3"), "MEDIA_ROOT": str(tmp_path / "media"), **variables}


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def settings_in(env: dict[str, str], *names: str) -> dict:
    code = ("import json, django; django.setup(); from django.conf import settings; "
            f"print(json.dumps({{n: getattr(settings, n) for n in {names!r}}}, default=str))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# --- URLs --------------------------------------------------------------------------------------

def test_postgres_urls():
    assert postgres_from_url("postgresql://app:p%40ss@db.internal:6432/faces?sslmode=require") == {
        "NAME": "faces", "USER": "app", "PASSWORD": "p@ss", "HOST": "db.internal", "PORT": "6432",
        "OPTIONS": {"sslmode": "require"}}
    assert postgres_from_url("postgres://postgres@127.0.0.1/facerec")["PORT"] == ""
    for bad in ("postgres://host-only", "postgres:///no-host", "postgres://u@h:port/x"):
        with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
            postgres_from_url(bad)


def test_sqlite_urls():
    assert sqlite_path_from_url("sqlite:///var/db.sqlite3") == "var/db.sqlite3"
    assert sqlite_path_from_url("sqlite:////srv/facerec/db.sqlite3") == "/srv/facerec/db.sqlite3"
    with pytest.raises(ImproperlyConfigured, match="names no file"):
        sqlite_path_from_url("sqlite://")


def test_error_messages_never_show_a_password():
    assert redacted("postgres://app:s3cret@db:5432/faces") == "postgres://app:***@db:5432/faces"
    assert redacted("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_database_cache_and_broker_from_the_environment(tmp_path):
    env = environment(tmp_path, DJANGO_SETTINGS_MODULE="config.settings.base",
                      DATABASE_URL="postgres://app:pw@db.internal:5432/faces", DB_POOL_MIN="2", DB_POOL_MAX="6",
                      DB_POOL_TIMEOUT="2.5", REDIS_URL="redis://cache.internal:6379/1",
                      CELERY_BROKER_URL="amqp://guest@mq.internal//")
    got = settings_in(env, "DATABASES", "CACHES", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")
    database = got["DATABASES"]["default"]
    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert (database["HOST"], database["NAME"], database["USER"], database["PASSWORD"]) == (
        "db.internal", "faces", "app", "pw")
    assert database["CONN_MAX_AGE"] == 0 and database["CONN_HEALTH_CHECKS"] is True
    assert database["OPTIONS"] == {"connect_timeout": 3, "pool": {"min_size": 2, "max_size": 6, "timeout": 2.5}}
    cache = got["CACHES"]["default"]
    assert cache["BACKEND"] == "django_redis.cache.RedisCache" and cache["LOCATION"] == "redis://cache.internal:6379/1"
    assert cache["OPTIONS"]["SOCKET_CONNECT_TIMEOUT"] <= 1 and cache["OPTIONS"]["SOCKET_TIMEOUT"] <= 1
    assert got["CELERY_BROKER_URL"] == "amqp://guest@mq.internal//"
    assert got["CELERY_RESULT_BACKEND"] == "redis://cache.internal:6379/1"


def test_cache_url_wins_over_redis_url_and_sqlite_is_the_default(tmp_path):
    env = environment(tmp_path, DJANGO_SETTINGS_MODULE="config.settings.base", REDIS_URL="redis://r:6379/1",
                      CACHE_URL=f"file://{tmp_path / 'cache'}")
    got = settings_in(env, "DATABASES", "CACHES")
    assert got["CACHES"]["default"]["BACKEND"].endswith("FileBasedCache")
    assert got["DATABASES"]["default"]["ENGINE"] == "django.db.backends.sqlite3"
    assert got["DATABASES"]["default"]["NAME"] == str(tmp_path / "db.sqlite3")


# --- Production settings -----------------------------------------------------------------------

def test_check_deploy_is_clean(tmp_path):
    done = manage(environment(tmp_path, **PRODUCTION), "check", "--deploy", "--fail-level", "WARNING")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues (0 silenced)." in done.stdout


@pytest.mark.parametrize("variables,message", [
    ({"SECRET_KEY": ""}, "SECRET_KEY must be set"),
    ({"SECRET_KEY": "dev-insecure-key-change-me-in-production"}, "SECRET_KEY must be set"),
    ({"SECRET_KEY": "short"}, "at least 50 characters"),
    ({"ALLOWED_HOSTS": ""}, "ALLOWED_HOSTS must list"),
    ({"LOG_FORMAT": "xml"}, "LOG_FORMAT must be json or text"),
    ({"DATABASE_URL": "mysql://app:pw@db/faces"}, "DATABASE_URL must start with postgres://"),
    ({"DATABASE_URL": "postgres://app@db/faces", "DB_POOL_MAX": "many"}, "DB_POOL_MAX must be an integer"),
    ({"CACHE_URL": "memcached://m:11211"}, "CACHE_URL must start with"),
])
def test_production_refuses_a_bad_configuration_with_one_clear_line(tmp_path, variables, message):
    env = {k: v for k, v in environment(tmp_path, **{**PRODUCTION, **variables}).items() if v != ""}
    done = manage(env, "check")
    assert done.returncode == 1
    assert done.stderr.startswith("Configuration error: ") and message in done.stderr
    assert "Traceback" not in done.stderr
    assert "pw@" not in done.stderr


# --- make serve: migrate, collectstatic, gunicorn ----------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served(tmp_path):
    """`make serve` on a loopback port, behind no proxy: each test request says what a TLS proxy would."""
    port = _free_port()
    env = environment(tmp_path, **PRODUCTION, STATIC_ROOT=str(tmp_path / "static"), WEB_CONCURRENCY="1",
                      GUNICORN_BIND=f"127.0.0.1:{port}")
    log = tmp_path / "serve.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(["make", "--no-print-directory", "serve"], cwd=ROOT, env=env,
                                   stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while True:
            try:
                requests.get(f"{base}/api/health/", timeout=2)
                break
            except requests.ConnectionError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"make serve did not start: {log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base, log
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # make and gunicorn: the session started above
        process.wait(timeout=60)


@pytest.mark.slow
def test_make_serve(served):
    base, log = served
    https = {"X-Forwarded-Proto": "https"}

    health = requests.get(f"{base}/api/health/", timeout=10, headers={"X-Request-ID": "probe-1"})
    assert health.status_code == 200 and health.headers["X-Request-ID"] == "probe-1"  # exempt from the redirect
    plain = requests.get(f"{base}/api/docs/", timeout=10, allow_redirects=False)
    assert plain.status_code == 301 and plain.headers["Location"].startswith("https://")

    docs = requests.get(f"{base}/api/docs/", timeout=10, headers=https)
    assert docs.status_code == 200
    assert docs.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert docs.headers["X-Frame-Options"] == "DENY"
    assets = re.findall(r'"(/static/[^"]+)"', docs.text)
    assert any(re.search(r"swagger-ui-bundle\.[0-9a-f]{12}\.js$", a) for a in assets), assets  # hashed names
    for asset in assets + ["/static/admin/css/base.css"]:
        response = requests.get(base + asset, timeout=10, headers=https)
        assert response.status_code == 200, asset
    admin = requests.get(f"{base}/admin/login/", timeout=10, headers=https)
    assert admin.status_code == 200 and "csrftoken" in admin.cookies
    assert "secure" in admin.headers["Set-Cookie"].lower()
    assert requests.get(f"{base}/static/streams/live.js", timeout=10, headers=https).status_code == 200

    # The live WebSocket is served by the same processes (gunicorn's uvicorn workers).
    import websocket

    stream = websocket.create_connection(f"ws://{base.removeprefix('http://')}/ws/live/?token=not-a-token", timeout=30)
    try:
        assert json.loads(stream.recv())["code"] == "authentication_failed"
    finally:
        stream.close()

    time.sleep(0.5)
    lines = [line for line in log.read_text().splitlines() if line and not line.startswith("make")]
    records = [json.loads(line) for line in lines]  # every line gunicorn and Django wrote is JSON
    assert any(r["logger"] == "gunicorn.error" and "Booting worker" in r["message"] for r in records)
    [probe] = [r for r in records if r.get("request_id") == "probe-1" and r["logger"] == "core.request"]
    assert (probe["endpoint"], probe["status"], probe["method"]) == ("api/health/", 200, "GET")
