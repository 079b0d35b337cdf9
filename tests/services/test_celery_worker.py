"""A photo enrolled with async=true through one API process is encoded by a real Celery worker and
recognised through another API process that was serving before the enrolment, on a real broker
(Redis, RabbitMQ), one database and one Redis cache."""

from __future__ import annotations

import pytest

from conftest import MISC, TRAIN
from tests.processes import Api, ApiServer, CeleryWorker, Processes, purge_broker, service_env, staff_token, wait_for

CACHE = "redis://127.0.0.1:6379/9"
BROKERS = {"redis": "redis://127.0.0.1:6379/10", "amqp": "amqp://guest:guest@127.0.0.1:5672//"}
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services, pytest.mark.slow]


@pytest.fixture(params=sorted(BROKERS))
def broker(request):
    url = BROKERS[request.param]
    purge_broker(url)
    yield url
    purge_broker(url)


@pytest.fixture
def processes():
    import redis

    redis.Redis.from_url(CACHE).flushdb()
    started = Processes()
    yield started
    started.stop_all()
    redis.Redis.from_url(CACHE).flushdb()


def test_async_enrolment_is_encoded_by_the_worker_and_seen_by_another_process(settings, tmp_path, broker,
                                                                              processes):
    token = staff_token()
    env = service_env(settings, REDIS_URL=CACHE, CELERY_BROKER_URL=broker)
    server_b = processes.add(ApiServer("api-b", env, tmp_path)).wait_ready()
    b = Api(server_b.base, token)
    assert b.labels(MISC / "obama_small.jpg") == ["unknown"]  # B has built its (empty) index

    server_a = processes.add(ApiServer("api-a", env, tmp_path))
    worker = processes.add(CeleryWorker("worker", env, tmp_path, broker=broker))
    server_a.wait_ready()
    worker.wait_ready()
    a = Api(server_a.base, token)

    person = a.create_person("obama")
    response = a.enrol(person, [TRAIN / "obama" / "obama.jpg", TRAIN / "obama" / "obama2.jpg"], run_async=True)
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    assert {r["face"]["status"] for r in response.json()["results"]} == {"pending"}

    def finished():
        job = a.request("GET", f"/api/jobs/{job_id}/").json()
        return job if job["state"] in ("succeeded", "failed") else None

    job = wait_for(finished, timeout=180, what="the worker finishing the job", interval=0.5,
                   detail=worker.log_tail)
    assert (job["state"], job["encoded"], job["failed"]) == ("succeeded", 2, 0), job
    faces = a.request("GET", f"/api/people/{person}/faces/").json()
    assert [f["status"] for f in faces] == ["encoded", "encoded"]

    assert b.labels(MISC / "obama_small.jpg") == ["obama"]
    assert server_b.alive() and server_b.workers_booted() == 1  # the same process all along
    assert "Task jobs.tasks.run_job" in worker.log.read_text()
