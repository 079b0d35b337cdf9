"""The ``face_recognition`` command: who, of the people in a folder, is in each image.

    face_recognition KNOWN_PEOPLE_FOLDER IMAGE_TO_CHECK [--tolerance 0.6] [--show-distance 1]
                     [--cpus N] [--progress]

Each known person is one image file named after them (``obama.jpg`` → ``obama``). One line per
face found in each image: ``path,name`` for every known person within the tolerance, else
``path,unknown_person``; ``path,no_persons_found`` for an image without a face; with
``--show-distance 1`` the distance is a third field. The same lines as the original's (images
over 1600 px are shrunk first, as there), always in directory order; images go through the
batched path (``face_engine.compat.batch``). An unreadable image is reported on stderr and skipped,
and the status is then 1.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import click
import numpy as np

from face_engine.compat import api
from face_engine.compat._cli import Readable, cpus_option, fail, progress_option
from face_engine.compat.batch import ImageFileError, encode_files, image_files_in_folder

__all__ = ["image_files_in_folder", "main", "print_result", "scan_known_people", "test_image"]

MAX_SIDE = 1600  # larger images to check are shrunk to this first, as the original does


def print_result(filename: str, name: str, distance: Any, show_distance: bool = False) -> None:
    click.echo(f"{filename},{name},{distance}" if show_distance else f"{filename},{name}")


def _known_face(path: str, encodings: Sequence[np.ndarray]) -> np.ndarray | None:
    if len(encodings) > 1:
        click.echo(f"WARNING: More than one face found in {path}. Only considering the first face.")
    if not encodings:
        click.echo(f"WARNING: No faces found in {path}. Ignoring file.")
        return None
    return encodings[0]


def _report(path: str, encodings: Sequence[np.ndarray], known_names: Sequence[str],
            known_face_encodings: Sequence[np.ndarray], tolerance: float, show_distance: bool) -> None:
    for encoding in encodings:
        distances = api.face_distance(known_face_encodings, encoding)
        matches = [(name, distance) for name, distance in zip(known_names, distances, strict=True)
                   if distance <= tolerance]
        for name, distance in matches:
            print_result(path, name, distance, show_distance)
        if not matches:
            print_result(path, "unknown_person", None, show_distance)
    if not encodings:
        print_result(path, "no_persons_found", None, show_distance)


def scan_known_people(known_people_folder: str, *, workers: int = 1,
                      progress: bool = False) -> tuple[list[str], list[np.ndarray]]:
    """(names, encodings) of the known people: each image file's name without its extension and
    its first face's encoding; files without a face are left out with a warning."""
    names, encodings, _ = _scan(known_people_folder, workers, progress)
    return names, encodings


def _scan(folder: str, workers: int, progress: bool) -> tuple[list[str], list[np.ndarray], bool]:
    files = image_files_in_folder(folder)
    names: list[str] = []
    encodings: list[np.ndarray] = []
    images = Readable(encode_files(files, workers=workers), progress, len(files), "known people")
    for path, found in images:
        face = _known_face(path, found)
        if face is not None:
            names.append(os.path.splitext(os.path.basename(path))[0])
            encodings.append(face)
    return names, encodings, images.failed


def test_image(image_to_check: str, known_names: Sequence[str], known_face_encodings: Sequence[np.ndarray],
               tolerance: float = 0.6, show_distance: bool = False) -> None:
    """Print the result lines of one image (the one-image path, without batching)."""
    for path, found in encode_files([image_to_check], max_side=MAX_SIDE, workers=1):
        if isinstance(found, ImageFileError):
            raise found
        _report(path, found, known_names, known_face_encodings, tolerance, show_distance)


@click.command(help="Recognise the known people (one image each in KNOWN_PEOPLE_FOLDER, named after them) "
                    "in IMAGE_TO_CHECK, an image or a folder of images.")
@click.argument("known_people_folder", type=click.Path(exists=True, file_okay=False))
@click.argument("image_to_check", type=click.Path(exists=True))
@cpus_option
@click.option("--tolerance", default=0.6, show_default=True, type=float,
              help="Largest face distance that counts as a match; lower it if one face matches several people.")
@click.option("--show-distance", default=False, type=bool,
              help="Print each match's face distance as a third field (helps to choose --tolerance).")
@progress_option
def main(known_people_folder: str, image_to_check: str, cpus: int, tolerance: float, show_distance: bool,
         progress: bool) -> None:
    try:
        known_names, known_encodings, failed = _scan(known_people_folder, cpus, progress)
        files = image_files_in_folder(image_to_check) if os.path.isdir(image_to_check) else [image_to_check]
        images = Readable(encode_files(files, max_side=MAX_SIDE, workers=cpus), progress, len(files), "images")
        for path, found in images:
            _report(path, found, known_names, known_encodings, tolerance, show_distance)
        failed = failed or images.failed
    except (OSError, RuntimeError, ValueError) as exc:
        # A folder that cannot be listed, missing model weights, a FACE_ENGINE_* setting that is
        # wrong or asks for a GPU that is not there: one line, not a traceback.
        fail(str(exc))
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
