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
CHUNK = 32  # faces per progress update


def generate_face_encoding(face_id: int) -> str | None:
    """Encode one stored face now; returns its error message, or None on success."""
    return face_encode_many(face_ids=[face_id]).get(face_id)


def _missing_face_ids() -> list[int]:
    stale = ~Q(status=Face.Status.ENCODED) | ~Q(model=embedding_model_id())
    return list(Face.objects.filter(stale).values_list("id", flat=True).order_by("id"))


def job_start(
    *, kind: str, face_ids: Sequence[int] | None = None, options: dict | None = None, user=None
) -> Job:
    """Create a job and hand it to the backend once the creating transaction commits."""
    with transaction.atomic():
        job = Job.objects.create(
            kind=kind, face_ids=list(face_ids) if face_ids is not None else [],
            options=options or {}, total=len(face_ids) if face_ids is not None else 0,
            created_by=user if user is not None and user.is_authenticated else None,
        )
        transaction.on_commit(lambda: backends.dispatch(job.pk))
    return job


def batch_generate_encodings(
    face_ids: Sequence[int] | None = None, *, largest: bool = False, user=None
) -> Job:
    """Queue a job encoding ``face_ids``, or every face not encoded under the current model."""
    ids = list(face_ids) if face_ids is not None else _missing_face_ids()
    return job_start(kind=Job.Kind.ENCODE, face_ids=ids, options={"largest": largest}, user=user)


def regenerate_all_encodings(*, user=None) -> Job:
    return job_start(kind=Job.Kind.REGENERATE_ALL, face_ids=None, user=user)


def job_run(job_id) -> Job:
    """Execute a job. Idempotent: a job run again (after a crash) re-encodes what is left."""
    job = Job.objects.get(pk=job_id)
    if job.state == Job.State.SUCCEEDED:
        return job
    if job.kind == Job.Kind.REGENERATE_ALL and not job.face_ids:
        job.face_ids = list(Face.objects.values_list("id", flat=True).order_by("id"))
    job.total = len(job.face_ids)
    job.state, job.started_at = Job.State.RUNNING, job.started_at or timezone.now()
    job.save(update_fields=["face_ids", "total", "state", "started_at"])
    largest = bool(job.options.get("largest"))
    todo = job.face_ids[job.processed:]
    try:
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start : start + CHUNK]
            errors = face_encode_many(face_ids=chunk, largest=largest)
            job.processed += len(chunk)
            job.failed += len(errors)
            job.encoded += len(chunk) - len(errors)
            job.errors.extend({"face_id": fid, "message": msg} for fid, msg in errors.items())
            job.save(update_fields=["processed", "failed", "encoded", "errors"])
    except Exception as exc:
        logger.exception("job %s failed", job.pk)
        job.state, job.message, job.finished_at = Job.State.FAILED, str(exc), timezone.now()
        job.save(update_fields=["state", "message", "finished_at"])
        raise
    job.state, job.finished_at = Job.State.SUCCEEDED, timezone.now()
    job.message = f"{job.encoded} encoded, {job.failed} failed."
    job.save(update_fields=["state", "finished_at", "message"])
    return job
