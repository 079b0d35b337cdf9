"""The stored files of faces, and deleting them (after the deleting transaction commits)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from core.files import delete_stored
from people.models import Face


def face_files(faces: Iterable[Face]) -> list[tuple]:
    """(storage, name) of the faces' photos and thumbnails."""
    faces = list(faces)
    return [(f.image.storage, f.image.name) for f in faces if f.image] + [
        (f.thumbnail.storage, f.thumbnail.name) for f in faces if f.thumbnail
    ]


def delete_files(files: Sequence[tuple], *, folders: Sequence[tuple] = ()) -> None:
    """Delete ``files`` ((storage, name) pairs), then ``folders`` that are left empty (the per-person
    folders of a file system storage: their name is the person's id)."""
    delete_stored(files)
    for storage, name in folders:
        try:
            os.rmdir(storage.path(name))
        except (NotImplementedError, OSError):  # not a local folder, not empty, or already gone
            pass
