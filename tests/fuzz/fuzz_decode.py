"""Fuzz the image decoder entry points (face_engine/decode.py): every input decodes to an upright
H×W×3 uint8 array within the pixel limit, or is refused with one of the documented ImageError
codes and statuses. Seeds: real photos and one tiny image per accepted format and mode."""

from __future__ import annotations

import _common  # noqa: F401 - the repository on sys.path
import atheris

# Pillow's format plugins are Python: instrumented too, so coverage guides into their parsers.
with atheris.instrument_imports(include=["face_engine", "PIL"]):
    from PIL import Image

    from face_engine.decode import decode_image, is_plain_jpeg
    from face_engine.types import ImageError

    Image.init()  # imports every format plugin now, inside the instrumentation (else on first open)

import numpy as np

MAX_BYTES = 10 * 1024 * 1024  # the service's defaults (MAX_UPLOAD_BYTES, MAX_IMAGE_PIXELS)
MAX_PIXELS = 40_000_000
REFUSALS = {"empty_file": 400, "not_an_image": 400, "corrupt_image": 400, "file_too_large": 413,
            "image_too_large": 413, "unsupported_format": 415}


def _refused(exc: ImageError) -> None:
    if REFUSALS.get(exc.code) != exc.status or not exc.message:
        raise _common.Finding(f"undocumented refusal {exc.code!r} {exc.status}: {exc.message!r}")


def test_one_input(data: bytes) -> None:
    try:
        is_plain_jpeg(data, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS)
    except ImageError as exc:
        _refused(exc)
    try:
        rgb = decode_image(data, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS)
    except ImageError as exc:
        _refused(exc)
        return
    if not (isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
            and 0 < rgb.shape[0] * rgb.shape[1] <= MAX_PIXELS):
        raise _common.Finding(f"decoded to {type(rgb)} {getattr(rgb, 'shape', None)} {getattr(rgb, 'dtype', None)}")


if __name__ == "__main__":
    _common.run(test_one_input, _common.small_images())
