"""Stored files of personal data (photos, thumbnails, crops): served privately, deleted quietly.

Media is never served publicly: every image goes through an authenticated view that streams it
with ``private_file``. Files are deleted after the transaction that removed their rows commits
(``delete_after_commit``), so a rolled-back write never loses a file its row still points to; a
file that cannot be deleted is logged, never raised (the row is already gone)."""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Iterable

from django.db import transaction
from django.db.models.fields.files import FieldFile
from django.http import FileResponse, Http404

logger = logging.getLogger(__name__)


def private_file(field: FieldFile, content_type: str | None = None) -> FileResponse:
    """The file behind ``field`` for one authenticated reader (not cached by anyone on the way);
    404 when there is none or it is gone from storage (purged, erased)."""
    if not field:
        raise Http404
    try:
        handle = field.open("rb")
    except OSError:  # the row points to a file gone from storage
        raise Http404 from None
    kind = content_type or mimetypes.guess_type(field.name)[0] or "application/octet-stream"
    response = FileResponse(handle, content_type=kind)
    response["Cache-Control"] = "private, no-store"
    return response


def delete_stored(files: Iterable[tuple]) -> None:
    """Delete (storage, name) pairs now, logging the ones that cannot be deleted."""
    for storage, name in files:
        try:
            storage.delete(name)
        except OSError:
            logger.warning("could not delete %s", name, exc_info=True)


def delete_after_commit(storage, names: Iterable[str]) -> None:
    """Delete ``names`` from ``storage`` once the current transaction commits (at once outside one)."""
    pending = [(storage, name) for name in names if name]
    if pending:
        transaction.on_commit(lambda: delete_stored(pending))
