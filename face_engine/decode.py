"""Bytes → RGB uint8 array, refusing anything that is not a sane image."""

from __future__ import annotations

import contextlib
import io
import struct
import warnings
from collections.abc import Iterator

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from face_engine.types import ImageError, RGBImage

ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP", "GIF", "MPO"})

# What Pillow raises on malformed input besides OSError: its parsers are not uniform about it.
_MALFORMED = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError, TypeError)

# EXIF orientation → the transpose that brings the pixels upright (the table exif_transpose uses).
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def decode_image(data: bytes, *, max_bytes: int, max_pixels: int) -> RGBImage:
    """Decode JPEG/PNG/WebP/BMP/GIF (first frame), apply EXIF orientation, return H×W×3 uint8."""
    with _guard():
        image = _open_checked(data, max_bytes, max_pixels)
        image.seek(0)
        image.load()
        # Converting runs Pillow code on the file's data too (palettes, tRNS): same guard.
        return to_rgb(_upright(image))


def is_plain_jpeg(data: bytes, *, max_bytes: int, max_pixels: int) -> bool:
    """Every check of :func:`decode_image` short of decoding the pixels (ImageError as there),
    then whether the file is a JPEG that any JPEG decoder gets right: colour or gray, upright.
    Such files may be decoded elsewhere (on the GPU); the rest go through ``decode_image``."""
    with _guard():
        image = _open_checked(data, max_bytes, max_pixels)
        return image.format == "JPEG" and image.mode in ("RGB", "L") and _orientation(image) == 1


def _open_checked(data: bytes, max_bytes: int, max_pixels: int) -> Image.Image:
    if not data:
        raise ImageError("empty_file", "The uploaded file is empty.")
    if len(data) > max_bytes:
        raise ImageError(
            "file_too_large",
            f"The file is {len(data)} bytes; the limit is {max_bytes} bytes.",
            status=413,
        )
    with warnings.catch_warnings():
        # Our own pixel limit below is the one that counts; PIL's warning would only be noise.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = Image.open(io.BytesIO(data))
    if image.format not in ALLOWED_FORMATS:
        raise ImageError(
            "unsupported_format",
            f"Unsupported image format {image.format}; use JPEG, PNG, WebP, BMP or GIF.",
            status=415,
        )
    _check_pixels(image.width, image.height, max_pixels)
    return image


@contextlib.contextmanager
def _guard() -> Iterator[None]:
    """Pillow's many exceptions on hostile or broken files → ImageError with a clear code."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError("image_too_large", f"The image is too large: {exc}", status=413) from exc
    except UnidentifiedImageError as exc:
        raise ImageError("not_an_image", "The file is not an image that can be decoded.") from exc
    except _MALFORMED as exc:
        raise ImageError("corrupt_image", f"The image is truncated or corrupt: {exc}") from exc


def _orientation(image: Image.Image) -> int | None:
    """The EXIF orientation tag (1: upright), None when the metadata cannot be read."""
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except _MALFORMED:
        return None
    return orientation if isinstance(orientation, int) else None


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation. Only the tag is read: ``ImageOps.exif_transpose`` also rewrites
    the EXIF block and fails (struct.error) on a corrupt one, rejecting a perfectly good image."""
    orientation = _orientation(image)  # None (unreadable metadata): keep the pixels as stored
    method = _ORIENTATION.get(orientation) if orientation is not None else None
    return image if method is None else image.transpose(method)


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageError("not_an_image", "The image has no pixels.")
    if width * height > max_pixels:
        raise ImageError(
            "image_too_large",
            f"The image is {width}×{height} = {width * height} pixels; "
            f"the limit is {max_pixels} pixels.",
            status=413,
        )


def to_rgb(image: Image.Image) -> RGBImage:
    """Any PIL mode → RGB uint8. Transparency is composited over white, 16/32-bit is rescaled."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
        gray = np.clip(array * (255.0 / peak), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if mode in ("P", "PA") or (mode in ("1", "L", "RGB") and "transparency" in image.info):
        # A palette, or a tRNS colour key on an L/RGB image: let Pillow turn it into alpha.
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    rgb = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
