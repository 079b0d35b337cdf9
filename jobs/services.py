"""Encoding jobs as services. A backend (Celery or the in-process pool) only calls `job_run`."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from jobs import backends
from jobs.models import Job
from people.engine import embedding_model_id
from people.models import Face
from people.services import face_encode_many

logger = logging.getLogger(__name__)
CHUNK = 32  # faces handed to the encoder at a time (progress is recorded per engine batch)


def generate_face_encoding(face_id: int) -> str | None:
    """Encode one stored face now; returns its error message, or None on success."""
    return face_encode_many(face_ids=[face_id]).get(face_id)


def _missing_face_ids() -> list[int]:
    stale = ~Q(status=Face.Status.ENCODED) | ~Q(model=embedding_model_id())
    return list(Face.objects.filter(stale).values_list("id", flat=True).order_by("id"))


def job_start(
    *, kind: str, face_ids: Sequence[int] | None = None, options: dict | None = None, user=None,
    request_id: str = "",
) -> Job:
    """Create a job and hand it to the backend once the creating transaction commits.

    The creating user and request id are kept so that the job's writes are audited under them.
    """
    options = dict(options or {})
    if request_id:
        options["request_id"] = request_id
    with transaction.atomic():
        job = Job.objects.create(
            kind=kind, face_ids=list(face_ids) if face_ids is not None else [],
            options=options, total=len(face_ids) if face_ids is not None else 0,
            created_by=user if user is not None and user.is_authenticated else None,
        )
        transaction.on_commit(lambda: backends.dispatch(job.pk))
    return job


def batch_generate_encodings(
    face_ids: Sequence[int] | None = None, *, largest: bool = False, user=None, request_id: str = ""
) -> Job:
    """Queue a job encoding ``face_ids``, or every face not encoded under the current model."""
    ids = list(face_ids) if face_ids is not None else _missing_face_ids()
    return job_start(kind=Job.Kind.ENCODE, face_ids=ids, options={"largest": largest}, user=user,
                     request_id=request_id)


def regenerate_all_encodings(*, user=None, request_id: str = "") -> Job:
    return job_start(kind=Job.Kind.REGENERATE_ALL, face_ids=None, user=user, request_id=request_id)


class _Superseded(Exception):
    """Another run of the same job (a redelivered task) recorded this batch first."""


class _Progress:
    """Records a job's progress inside each encoded batch's transaction: a batch's faces and the
    job's `processed` commit together, so a run killed at any point redoes only uncommitted work
    and no face is encoded twice by one job. A second run of the same job (a broker redelivering a
    task that is still running) finds `processed` moved on and gives that batch up."""

    def __init__(self, job: Job) -> None:
        self.job_pk = job.pk
        self.cursor = job.processed

    def record(self, batch_ids, batch_errors: dict[int, str]) -> None:
        job = Job.objects.select_for_update().get(pk=self.job_pk)
        if job.processed != self.cursor:
            raise _Superseded
        job.processed += len(batch_ids)
        job.failed += len(batch_errors)
        job.encoded += len(batch_ids) - len(batch_errors)
        job.errors.extend({"face_id": fid, "message": msg} for fid, msg in batch_errors.items())
        job.save(update_fields=["processed", "failed", "encoded", "errors"])
        self.cursor = job.processed


def job_run(job_id) -> Job:
    """Execute a job. Idempotent: a job run again (after a crash) re-encodes what is left, and each
    face is encoded (and audited as `face.encode` with the job's id) exactly once by the job."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        if job.state == Job.State.SUCCEEDED:
            return job
        if job.kind == Job.Kind.REGENERATE_ALL and not job.face_ids:
            job.face_ids = list(Face.objects.values_list("id", flat=True).order_by("id"))
        job.total = len(job.face_ids)
        job.state, job.started_at = Job.State.RUNNING, job.started_at or timezone.now()
        job.save(update_fields=["face_ids", "total", "state", "started_at"])
    largest = bool(job.options.get("largest"))
    who = {"actor": job.created_by, "request_id": job.options.get("request_id", ""), "job_id": str(job.pk)}
    try:
        while job.processed < job.total:
            progress = _Progress(job)
            chunk = job.face_ids[job.processed : job.processed + CHUNK]
            try:
                face_encode_many(face_ids=chunk, largest=largest, on_batch=progress.record, **who)
            except _Superseded:
                logger.warning("job %s: another run recorded faces from %s on first; going on from its progress",
                               job.pk, progress.cursor)
            job.refresh_from_db()
    except Exception as exc:
        logger.exception("job %s failed", job.pk)
        job.state, job.message, job.finished_at = Job.State.FAILED, str(exc), timezone.now()
        job.save(update_fields=["state", "message", "finished_at"])
        raise
    job.state, job.finished_at = Job.State.SUCCEEDED, timezone.now()
    job.message = f"{job.encoded} encoded, {job.failed} failed."
    job.save(update_fields=["state", "finished_at", "message"])
    return job
