"""A Celery worker killed with SIGKILL in the middle of a regenerate-all job: the job still
completes, and every face is encoded exactly once by it.

"Exactly once" is observed in the audit trail: each encoded batch writes one `face.encode` record
naming its faces and the job, in the same transaction as the faces and the job's progress
(jobs.services). A batch that a kill cut short left nothing and is redone; a committed batch is
never redone. So the job's records name every face once, and only once.

- amqp: the whole worker (main process and pool) is killed; RabbitMQ gives the unacknowledged task
  back when its connection drops; a new worker is started and finishes the job.
- redis: the pool process running the task is killed (as the OOM killer would); the worker's main
  process gives the task back to the broker (acks_late + reject_on_worker_lost) and runs it again.
  (Killing the whole worker on Redis leaves the task invisible for the broker's visibility_timeout,
  an hour by default: see docs/operations.md.)
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections import Counter

import pytest

from conftest import TRAIN, upload
from tests.processes import CeleryWorker, Processes, purge_broker, service_env, wait_for

BROKERS = {"redis": "redis://127.0.0.1:6379/8", "amqp": "amqp://guest:guest@127.0.0.1:5672//"}
COPIES = 5  # people, each enrolled with all 9 training photos: 45 faces
BATCH = 4  # faces per engine batch in the worker, hence per committed step of the job
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services, pytest.mark.slow]


@pytest.fixture(params=sorted(BROKERS))
def broker(request):
    url = BROKERS[request.param]
    purge_broker(url)
    yield request.param, url
    purge_broker(url)


def _stored_faces() -> list[int]:
    """Stored as an async enrolment stores them (pending); the first person's already encoded, as
    before a model change: the job re-encodes those (a new thumbnail replaces the old one)."""
    from people.services import face_encode_many, face_enroll, person_create

    photos = sorted(p for p in TRAIN.rglob("*") if p.is_file())
    ids = []
    for i in range(COPIES):
        # The same photos for every copy: forced over the duplicate check the job applies.
        outcomes = face_enroll(person=person_create(name=f"copy-{i}"), uploads=[upload(p) for p in photos],
                               run_async=True, force=True)
        ids += [o.face.pk for o in outcomes]
    face_encode_many(face_ids=ids[: len(photos)])
    return ids


def _send(job_id: str, broker: str) -> None:
    from config.celery import app
    from jobs.tasks import run_job

    # On a connection of its own: the app's producer pool belongs to the test settings' broker.
    with app.connection_for_write(broker) as connection:
        run_job.apply_async(args=[job_id], connection=connection)


def _encoded_by(job) -> Counter:
    """How many times the job encoded each face, from the `face.encode` audit records."""
    from core.audit.models import AuditRecord

    records = AuditRecord.objects.filter(action="face.encode", details__job_id=str(job.pk))
    return Counter(itertools.chain.from_iterable(r.target_ids for r in records))


def test_a_worker_killed_mid_job(settings, tmp_path, broker):
    from jobs.models import Job
    from people.models import Face

    kind, url = broker
    face_ids = _stored_faces()
    env = service_env(settings, FACE_ENGINE_MAX_BATCH_SIZE=str(BATCH))
    started = Processes()
    try:
        first = started.add(CeleryWorker("worker-1", env, tmp_path, broker=url)).wait_ready()
        job = Job.objects.create(kind=Job.Kind.REGENERATE_ALL)
        _send(str(job.pk), url)

        def midway():  # judged by the faces encoded, not by the job's own progress counter
            done = _encoded_by(job)
            return 2 * BATCH <= sum(done.values()) <= len(face_ids) - 2 * BATCH

        wait_for(midway, timeout=240, what="the job half done", interval=0.1, detail=first.log_tail)
        time.sleep(0.7)  # into the next batch: its work is lost with the process
        if kind == "amqp":
            first.kill()  # the worker and its pool
            killed_at = Job.objects.get(pk=job.pk).processed
            second = started.add(CeleryWorker("worker-2", env, tmp_path, broker=url)).wait_ready()
        else:
            [child] = first.pool_children()
            os.kill(child, signal.SIGKILL)  # the pool process running the task
            killed_at = Job.objects.get(pk=job.pk).processed
            second = first
        assert Job.objects.get(pk=job.pk).state == Job.State.RUNNING
        assert killed_at < len(face_ids)

        def finished():
            job.refresh_from_db()
            return job.state in (Job.State.SUCCEEDED, Job.State.FAILED)

        killed = time.monotonic()
        wait_for(finished, timeout=300, what="the job finished after the kill", interval=0.5,
                 detail=second.log_tail)
        print(f"worker killed [{kind}]: {len(face_ids)} faces, killed at {killed_at} recorded, "
              f"finished {time.monotonic() - killed:.1f} s after the kill")
    finally:
        started.stop_all()

    assert (job.state, job.total, job.processed, job.encoded, job.failed) == (
        Job.State.SUCCEEDED, len(face_ids), len(face_ids), len(face_ids), 0), job.message
    assert set(job.face_ids) == set(face_ids)
    faces = Face.objects.filter(pk__in=face_ids)
    assert set(faces.values_list("status", flat=True)) == {Face.Status.ENCODED}
    assert not faces.filter(embedding__isnull=True).exists()
    assert all(f.thumbnail and f.thumbnail.storage.exists(f.thumbnail.name) for f in faces)

    encoded = _encoded_by(job)
    assert set(encoded) == set(face_ids)
    assert {count for count in encoded.values()} == {1}, [f for f, n in encoded.items() if n > 1]
    # The kill cost the job its process: the task was taken up again after it.
    log = second.log.read_text()
    if kind == "amqp":
        assert "Task jobs.tasks.run_job" in log and "succeeded" in log
    else:
        assert "WorkerLostError" in log or "SIGKILL" in log, second.log_tail()
