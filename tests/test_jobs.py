"""Encoding jobs: services, the in-process pool, the API, and the Celery task path."""

import pytest

from conftest import MISC, TRAIN, celery_broker, make_client, upload

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def staff_api(db):
    from django.contrib.auth import get_user_model

    return make_client(get_user_model().objects.create_user("ops", password="x", is_staff=True))


def _pending_faces(engine, photos):
    """Faces stored as the async enrolment stores them: pending, no embedding."""
    from people.services import face_enroll, person_create

    person = person_create(name="Obama")
    outcomes = face_enroll(person=person, uploads=[upload(p) for p in photos], run_async=True)
    return person, [o.face.pk for o in outcomes]


def test_batch_generate_encodings_of_missing_faces(engine, staff_api):
    from jobs.backends import wait_idle
    from people.models import Face

    person, ids = _pending_faces(engine, [TRAIN / "obama" / "obama.jpg", TRAIN / "obama" / "obama2.jpg"])
    response = staff_api.post("/api/faces/encodings/", {"scope": "missing"}, format="json")
    assert response.status_code == 202
    body = response.json()
    assert body["total"] == 2 and body["state"] == "queued"
    wait_idle()
    job = staff_api.get(f"/api/jobs/{body['job_id']}/").json()
    assert (job["state"], job["encoded"], job["failed"], job["progress"]) == ("succeeded", 2, 0, 1.0)
    assert set(Face.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"encoded"}
    # Nothing is missing any more: the next "missing" job has nothing to do.
    again = staff_api.post("/api/faces/encodings/", {"scope": "missing"}, format="json").json()
    assert again["total"] == 0
    wait_idle()
    assert staff_api.get(f"/api/jobs/{again['job_id']}/").json()["state"] == "succeeded"


def test_regenerate_all_is_idempotent(engine, staff_api):
    from jobs.backends import wait_idle
    from people.models import Face
    from people.services import face_encode_many

    person, ids = _pending_faces(engine, [TRAIN / "obama" / "obama.jpg", MISC / "obama_small.jpg"])
    face_encode_many(face_ids=ids)
    before = {f.pk: bytes(f.embedding) for f in Face.objects.filter(pk__in=ids)}
    body = staff_api.post("/api/faces/encodings/", {"scope": "all"}, format="json").json()
    wait_idle()
    job = staff_api.get(f"/api/jobs/{body['job_id']}/").json()
    assert job["state"] == "succeeded" and job["total"] == 2 and job["encoded"] == 2
    after = {f.pk: bytes(f.embedding) for f in Face.objects.filter(pk__in=ids)}
    assert after == before


def test_encoding_listed_faces_and_errors(engine, staff_api):
    from jobs.backends import wait_idle

    person, ids = _pending_faces(engine, [MISC / "two_people.jpg"])
    body = staff_api.post("/api/faces/encodings/", {"scope": ids}, format="json").json()
    wait_idle()
    job = staff_api.get(f"/api/jobs/{body['job_id']}/").json()
    assert job["failed"] == 1 and job["errors"][0]["face_id"] == ids[0]
    unknown = staff_api.post("/api/faces/encodings/", {"scope": [ids[0], 999999]}, format="json")
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "unknown_faces"
    for scope in ("some", [], ["1"], [True], 5):
        bad = staff_api.post("/api/faces/encodings/", {"scope": scope}, format="json")
        assert bad.status_code == 400, scope
    assert staff_api.get("/api/jobs/00000000-0000-0000-0000-000000000000/").status_code == 404


def test_generate_face_encoding_service(engine):
    from jobs.services import generate_face_encoding
    from people.models import Face

    person, ids = _pending_faces(engine, [MISC / "obama_small.jpg", MISC / "two_people.jpg"])
    assert generate_face_encoding(ids[0]) is None
    assert Face.objects.get(pk=ids[0]).status == "encoded"
    assert "faces were found" in generate_face_encoding(ids[1])
    assert Face.objects.get(pk=ids[1]).status == "multiple_faces"


def test_a_job_resumes_where_it_stopped(engine):
    """A job run again after a crash (Celery redelivery) continues and encodes each face once."""
    from jobs.models import Job
    from jobs.services import job_run
    from people.models import Face

    person, ids = _pending_faces(engine, [TRAIN / "obama" / "obama.jpg", MISC / "obama_small.jpg"])
    job = Job.objects.create(kind=Job.Kind.ENCODE, face_ids=ids, total=2, processed=1,
                             encoded=1, state=Job.State.RUNNING)
    job = job_run(job.pk)
    assert (job.state, job.processed, job.encoded) == (Job.State.SUCCEEDED, 2, 2)
    assert Face.objects.get(pk=ids[1]).status == "encoded"
    assert Face.objects.get(pk=ids[0]).status == "pending"  # done before the "crash", not redone
    assert job_run(job.pk).processed == 2  # a finished job is not run again


def test_a_batch_committed_by_another_run_of_the_job_is_not_redone(engine, monkeypatch):
    """A broker may hand a job still running to a second worker: the run that finds the job's
    progress moved under it gives its batch up, so each face is encoded once by the job."""
    from core.audit.models import AuditRecord
    from jobs import services
    from jobs.models import Job
    from people.models import Face

    person, ids = _pending_faces(engine, [TRAIN / "obama" / "obama.jpg", MISC / "obama_small.jpg"])
    job = Job.objects.create(kind=Job.Kind.ENCODE, face_ids=ids, total=2)
    encode = services.face_encode_many
    calls = []

    def other_run_first(**kwargs):
        if not calls:  # meanwhile, another run of the job has recorded the first face
            Job.objects.filter(pk=job.pk).update(processed=1, encoded=1)
        calls.append(kwargs["face_ids"])
        return encode(**kwargs)

    monkeypatch.setattr(services, "face_encode_many", other_run_first)
    job = services.job_run(job.pk)
    assert calls == [ids, ids[1:]]
    assert (job.state, job.processed, job.encoded) == (Job.State.SUCCEEDED, 2, 2)
    assert Face.objects.get(pk=ids[0]).status == "pending"  # given up here: the "other run" owns it
    records = AuditRecord.objects.filter(action="face.encode", details__job_id=str(job.pk))
    assert [r.target_ids for r in records] == [[ids[1]]]


def test_a_re_encoding_rolled_back_keeps_the_old_thumbnail(engine):
    from people.models import Face
    from people.services import face_encode_many

    person, ids = _pending_faces(engine, [MISC / "obama_small.jpg"])
    face_encode_many(face_ids=ids)
    before = Face.objects.get(pk=ids[0]).thumbnail

    def killed(batch_ids, errors):
        raise RuntimeError("killed before the commit")

    with pytest.raises(RuntimeError):
        face_encode_many(face_ids=ids, on_batch=killed)
    after = Face.objects.get(pk=ids[0]).thumbnail
    assert after.name == before.name and after.storage.exists(after.name)
    face_encode_many(face_ids=ids)  # committed: the new thumbnail replaces the old file
    replaced = Face.objects.get(pk=ids[0]).thumbnail
    assert replaced.name != before.name and not before.storage.exists(before.name)


def test_celery_task_runs_the_job(engine, settings):
    """The Celery task wraps the same service; run it through Celery's own apply()."""
    from jobs.models import Job
    from jobs.tasks import generate_face_encoding, run_job
    from people.models import Face

    person, ids = _pending_faces(engine, [MISC / "obama_small.jpg"])
    job = Job.objects.create(kind=Job.Kind.ENCODE, face_ids=ids, total=1)
    result = run_job.apply(args=[str(job.pk)])
    assert result.successful() and result.result == "succeeded"
    assert Face.objects.get(pk=ids[0]).status == "encoded"
    assert generate_face_encoding.apply(args=[ids[0]]).result is None
    assert run_job.max_retries == 3 and run_job.retry_backoff == 60 and run_job.acks_late


@pytest.mark.services
def test_dispatch_sends_to_the_celery_broker_when_configured(engine, settings):
    """With CELERY_BROKER_URL set the job goes to the real broker (Redis here), not the pool."""
    import json

    import redis

    from jobs import backends
    from jobs.models import Job

    url = "redis://127.0.0.1:6379/15"
    queue = redis.Redis.from_url(url)
    queue.flushdb()
    with celery_broker(settings, url):
        job = Job.objects.create(kind=Job.Kind.ENCODE, face_ids=[], total=0)
        backends.dispatch(job.pk)
        message = json.loads(queue.lpop("celery"))
        assert message["headers"]["task"] == "jobs.tasks.run_job"
        assert message["headers"]["argsrepr"] == repr((str(job.pk),))
    queue.flushdb()
