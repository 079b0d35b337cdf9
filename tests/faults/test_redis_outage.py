"""Redis, the cache that carries the index version between processes, stopped under two API
processes: recognition keeps answering with the right names in both, writes succeed, a delete
made during the outage is not returned by the other process (each checks the version in the
database while the cache is unreachable), and once Redis is back everything converges."""

from __future__ import annotations

import contextlib
import time

import pytest
import redis

from conftest import MISC, TEST, TRAIN
from tests.processes import Api, ApiServer, PrivateRedis, Processes, service_env, staff_token, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services, pytest.mark.slow]
FAST = 5.0  # seconds: an answer during the outage must come at least this fast


def _timed_labels(api: Api, photo) -> tuple[list[str], float]:
    start = time.monotonic()
    labels = api.labels(photo)
    return sorted(labels), time.monotonic() - start


def _health(api: Api) -> tuple[int, dict]:
    response = api.request("GET", "/api/health/", timeout=10)
    return response.status_code, response.json()


@contextlib.contextmanager
def _two_servers_on_private_redis(settings, tmp_path):
    """(the private Redis, the two API servers, a client of each); every process stopped after."""
    token = staff_token()
    started = Processes()
    cache = started.add(PrivateRedis(tmp_path)).start()
    try:
        env = service_env(settings, REDIS_URL=cache.url)
        servers = [started.add(ApiServer(name, env, tmp_path)) for name in ("api-a", "api-b")]
        a, b = (Api(server.wait_ready().base, token) for server in servers)
        yield cache, servers, a, b
    finally:
        started.stop_all()


def test_redis_stopped_and_started_again(settings, tmp_path):
    with _two_servers_on_private_redis(settings, tmp_path) as (cache, servers, a, b):
        obama = a.create_person("obama")
        assert a.enrol(obama, [TRAIN / "obama" / "obama.jpg"]).status_code == 201
        biden = b.create_person("biden")
        assert b.enrol(biden, [TRAIN / "biden" / "biden.jpg"]).status_code == 201
        for api in (a, b):
            assert _timed_labels(api, TEST / "obama_and_biden.jpg")[0] == ["biden", "obama", "unknown"]
            assert _health(api)[1]["status"] == "ok"

        cache.stop()
        slowest = 0.0
        for api in (a, b):  # reads: the right names, quickly
            labels, took = _timed_labels(api, TEST / "obama_and_biden.jpg")
            assert labels == ["biden", "obama", "unknown"]
            slowest = max(slowest, took)
            status, body = _health(api)  # degraded, yet in rotation: it still answers correctly
            assert (status, body["status"], body["cache"], body["database"]) == (200, "degraded", False, True), body

        # Writes succeed; each process sees the other's at once, deletes included.
        kit = a.create_person("kit")
        assert a.enrol(kit, [TRAIN / "kit_harington" / "john1.jpeg"]).status_code == 201
        labels, took = _timed_labels(b, TEST / "johnsnow_test1.jpg")
        assert labels == ["kit"]
        slowest = max(slowest, took)
        assert a.request("DELETE", f"/api/people/{obama}/").status_code == 204
        assert "obama" not in b.names_matched(MISC / "obama_small.jpg")
        assert _timed_labels(b, TEST / "obama_and_biden.jpg")[0] == ["biden", "unknown", "unknown"]
        assert b.request("DELETE", f"/api/people/{kit}/").status_code == 204
        assert _timed_labels(a, TEST / "johnsnow_test1.jpg")[0] == ["unknown"]
        assert slowest < FAST, f"a request took {slowest:.2f} s while Redis was down"

        cache.start()  # the same port, empty (no persistence)
        for api in (a, b):
            wait_for(lambda api=api: _health(api)[1]["status"] == "ok", timeout=20, what="health back to ok")
        # Writes after the recovery are seen by both, through the cache again.
        rose = b.create_person("rose")
        assert b.enrol(rose, [TRAIN / "rose_leslie" / "img1.jpg"]).status_code == 201
        assert "rose" in a.labels(TEST / "kit_with_rose.jpg")
        assert a.request("DELETE", f"/api/people/{biden}/").status_code == 204
        for api in (a, b):
            assert _timed_labels(api, TEST / "obama_and_biden.jpg")[0] == ["unknown", "unknown", "unknown"]
            assert sorted(api.labels(TEST / "kit_with_rose.jpg")) == ["rose", "unknown"]
        assert redis.Redis.from_url(cache.url).keys("*face-index-version*"), "the version is in the cache again"
        assert all(server.workers_booted() == 1 for server in servers)  # no process was restarted
        print(f"redis outage: slowest request while Redis was down {slowest:.2f} s")


def test_redis_hanging(settings, tmp_path):
    """Redis frozen (SIGSTOP: it accepts connections and never answers, as behind a partition):
    requests wait on the cache's socket timeouts, then answer from the database."""
    import signal

    with _two_servers_on_private_redis(settings, tmp_path) as (cache, _, a, b):
        obama = a.create_person("obama")
        assert a.enrol(obama, [TRAIN / "obama" / "obama.jpg"]).status_code == 201
        assert _timed_labels(b, MISC / "obama_small.jpg")[0] == ["obama"]

        cache.process.signal_group(signal.SIGSTOP)
        timings = []
        try:
            for api in (a, b):
                labels, took = _timed_labels(api, MISC / "obama_small.jpg")
                timings.append(took)
                assert labels == ["obama"]
            assert a.request("DELETE", f"/api/people/{obama}/").status_code == 204
            labels, took = _timed_labels(b, MISC / "obama_small.jpg")
            timings.append(took)
            assert labels == ["unknown"]
        finally:
            cache.process.signal_group(signal.SIGCONT)
        print(f"redis hanging: requests took {', '.join(f'{t:.2f}' for t in timings)} s")
        assert max(timings) < FAST
