"""The stored files of faces, and deleting them (after the deleting transaction commits)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from core.files import delete_stored
from people.models import Face

logger = logging.getLogger("people.services")


def face_files(faces: Iterable[Face]) -> list[tuple]:
    return [(f.image.storage, f.image.name) for f in faces if f.image] + [
        (f.thumbnail.storage, f.thumbnail.name) for f in faces if f.thumbnail
    ]


def delete_files(files: Sequence[tuple]) -> None:
    delete_stored(files)
