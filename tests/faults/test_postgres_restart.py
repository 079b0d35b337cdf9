"""PostgreSQL stopped under a running API server (gunicorn, production settings, Django's pool):
requests get a clean 503 with the JSON error shape within seconds, never a 500 or a hang; started
again, the server recovers by itself, without a restart. On a throw-away cluster of its own."""

from __future__ import annotations

import time

import pytest

from conftest import MISC, TRAIN
from tests.processes import Api, ApiServer, Processes, manage, service_env, wait_for

pytestmark = [pytest.mark.services, pytest.mark.slow]
FAST = 10.0  # seconds: the pool's wait (DB_POOL_TIMEOUT 5) and a connection attempt (DB_CONNECT_TIMEOUT 3)



def _timed(call):
    start = time.monotonic()
    response = call()
    return response, time.monotonic() - start


def test_postgres_stopped_and_started_again(cluster, tmp_path):
    env = service_env(DATABASE_URL=cluster.createdb("facerec_fault"), MEDIA_ROOT=str(tmp_path / "media"))
    manage(env, "migrate", "--noinput")
    manage({**env, "DJANGO_SUPERUSER_PASSWORD": "fault-test-pass-1"}, "createsuperuser", "--noinput",
           "--username", "ops", "--email", "ops@example.com")
    token = manage(env, "drf_create_token", "ops").stdout.split()[2]
    started = Processes()
    try:
        api = Api(started.add(ApiServer("api", env, tmp_path)).wait_ready().base, token, timeout=30)
        person = api.create_person("obama")
        assert api.enrol(person, [TRAIN / "obama" / "obama.jpg"]).status_code == 201
        assert api.labels(MISC / "obama_small.jpg") == ["obama"]

        cluster.stop("fast")
        calls = [  # the first finds the pool's connection dead, the next ones no connection at all
            ("recognize", lambda: api.recognize(MISC / "obama_small.jpg")),
            ("recognize", lambda: api.recognize(MISC / "obama_small.jpg")),
            ("list people", lambda: api.request("GET", "/api/people/")),
            ("enrol", lambda: api.enrol(person, [TRAIN / "obama" / "obama2.jpg"])),
            ("delete", lambda: api.request("DELETE", f"/api/people/{person}/")),
        ]
        slowest = 0.0
        for what, call in calls:
            response, took = _timed(call)
            slowest = max(slowest, took)
            assert response.status_code == 503, (what, response.status_code, response.text[:500])
            assert response.json() == {"success": False, "error": {
                "code": "database_unavailable", "message": "The database is unavailable; try again shortly."}}
            assert took < FAST, (what, took)
        health, took = _timed(lambda: api.request("GET", "/api/health/"))
        assert health.status_code == 503 and health.json()["database"] is False and took < FAST

        cluster.start()
        restarted = time.monotonic()
        wait_for(lambda: api.request("GET", "/api/health/").status_code == 200, timeout=60,
                 what="health 200 after PostgreSQL is back", interval=0.5)
        recovered = time.monotonic() - restarted
        assert api.labels(MISC / "obama_small.jpg") == ["obama"]
        assert api.enrol(person, [TRAIN / "obama" / "obama2.jpg"]).status_code == 201
        assert api.request("DELETE", f"/api/people/{person}/").status_code == 204
        assert api.labels(MISC / "obama_small.jpg") == ["unknown"]
        server = started.items[0]
        assert server.workers_booted() == 1  # the same worker process throughout
        log = server.log.read_text()
        assert '"status": 500' not in log
        print(f"postgres restart: slowest 503 {slowest:.2f} s; healthy {recovered:.1f} s after the restart")
    finally:
        started.stop_all()
