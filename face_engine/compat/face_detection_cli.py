"""The ``face_detection`` command: the box of every face in an image or a folder of images.

    face_detection IMAGE_TO_CHECK [--model hog|cnn] [--upsample N] [--cpus N] [--progress]

One line per face: ``path,top,right,bottom,left``, the original's format and boxes, in directory
order. Images go through the batched path (``face_engine.compat.batch``): HOG on ``--cpus``
threads, the CNN batched by image size (on a GPU when there is one). An unreadable image is
reported on stderr and skipped, and the status is then 1.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import click

from face_engine.compat import api
from face_engine.compat._cli import Readable, cpus_option, fail, progress_option
from face_engine.compat.batch import image_files_in_folder, locate_files

__all__ = ["image_files_in_folder", "main", "print_result", "test_image"]


def print_result(filename: str, location: Sequence[int]) -> None:
    top, right, bottom, left = location
    click.echo(f"{filename},{top},{right},{bottom},{left}")


def test_image(image_to_check: str, model: str, upsample: int) -> None:
    """Print the boxes of one image (the one-image path, without batching)."""
    image = api.load_image_file(image_to_check)
    for location in api.face_locations(image, number_of_times_to_upsample=upsample, model=model):
        print_result(image_to_check, location)


@click.command(help="Print the box (top, right, bottom, left) of every face in IMAGE_TO_CHECK, an image or "
                    "a folder of images.")
@click.argument("image_to_check", type=click.Path(exists=True))
@cpus_option
@click.option("--model", default="hog", show_default=True, type=click.Choice(["hog", "cnn"], case_sensitive=False),
              help="Detector: hog (dlib's, CPU) or cnn (more accurate; the ported network, on a GPU if any).")
@click.option("--upsample", default=0, show_default=True, type=click.IntRange(min=0),
              help="Times to double the image before detecting: each finds faces half as small, four times slower.")
@progress_option
def main(image_to_check: str, cpus: int, model: str, upsample: int, progress: bool) -> None:
    try:
        files = image_files_in_folder(image_to_check) if os.path.isdir(image_to_check) else [image_to_check]
        images = Readable(locate_files(files, number_of_times_to_upsample=upsample, model=model.lower(), workers=cpus),
                          progress, len(files), "images")
        for path, found in images:
            for location in found:
                print_result(path, location)
    except (OSError, RuntimeError, ValueError) as exc:
        # A folder that cannot be listed, missing model weights, a FACE_ENGINE_* setting that is
        # wrong or asks for a GPU that is not there: one line, not a traceback.
        fail(str(exc))
    if images.failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
