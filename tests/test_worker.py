"""`make worker`: a real Celery worker on the machine's Redis runs an encoding job end to end,
under the production settings, logging JSON lines."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import MISC, database_env, upload

ROOT = Path(__file__).resolve().parent.parent
BROKER = "redis://127.0.0.1:6379/12"
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services, pytest.mark.slow]


@pytest.fixture
def worker(settings, tmp_path):
    import redis

    redis.Redis.from_url(BROKER).flushdb()
    env = {**os.environ, **database_env(settings), "MEDIA_ROOT": settings.MEDIA_ROOT, "CELERY_BROKER_URL": BROKER,
           "CELERY_RESULT_BACKEND": "", "REDIS_URL": "", "CELERY_WORKER_CONCURRENCY": "1",
           "SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "127.0.0.1", "LOG_FORMAT": "json"}
    log = tmp_path / "worker.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(["make", "--no-print-directory", "worker"], cwd=ROOT, env=env,
                                   stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    try:
        yield log
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # make and the worker: the session started above
        process.wait(timeout=60)
        redis.Redis.from_url(BROKER).flushdb()


def test_make_worker_runs_an_encoding_job(engine, worker):
    from config.celery import app
    from jobs.models import Job
    from jobs.tasks import run_job
    from people.services import face_enroll, person_create

    [outcome] = face_enroll(person=person_create(name="obama"), uploads=[upload(MISC / "obama_small.jpg")])
    job = Job.objects.create(kind=Job.Kind.ENCODE, face_ids=[outcome.face.pk], total=1)
    # Sent on a connection of its own: the app's producer pool belongs to the test settings' broker.
    with app.connection_for_write(BROKER) as connection:
        run_job.apply_async(args=[str(job.pk)], connection=connection)
    deadline = time.monotonic() + 180
    while Job.objects.get(pk=job.pk).state != Job.State.SUCCEEDED:
        assert time.monotonic() < deadline, worker.read_text()[-3000:]
        time.sleep(0.5)
    assert Job.objects.get(pk=job.pk).encoded == 1

    time.sleep(0.5)
    records = [json.loads(line) for line in worker.read_text().splitlines() if line and not line.startswith("make")]
    assert any("succeeded" in r["message"] and r["logger"].startswith("celery") for r in records), records
