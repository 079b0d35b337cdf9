"""Bytes → RGB uint8 array, refusing anything that is not a sane image.

Memory: a hostile file can be small on disk and large in pixels (a 33 KB JPEG declaring 6000×6600),
so the declared size is checked before any pixel is decoded, and the decoded image is converted to
RGB strip by strip straight into the output array. A request then holds Pillow's own pixels (at most
4 bytes a pixel) and the output (3 bytes a pixel), never the several full-size intermediate copies
a whole-image convert / alpha composite / float rescale would make (7 bytes a pixel at most: 280 MB
for a 40 MP image, where whole-image conversions took up to 900 MB)."""

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
# Only these parsers ever see an upload: Pillow's other plugins (TIFF, PSD, DDS, EPS, ...) are more
# code exposed to hostile bytes, and one of them raised NotImplementedError (a 500) on a DDS header.
_OPENERS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
# A refused format is named from its signature alone, so that it can be told apart from garbage.
_SIGNATURES = (
    (0, b"II*\x00", "TIFF"), (0, b"MM\x00*", "TIFF"), (0, b"\x00\x00\x01\x00", "ICO"),
    (0, b"\x00\x00\x02\x00", "CUR"), (0, b"%PDF", "PDF"), (0, b"8BPS", "PSD"), (0, b"qoif", "QOI"),
    (0, b"DDS ", "DDS"), (0, b"%!PS", "EPS"), (0, b"\xc5\xd0\xd3\xc6", "EPS"), (0, b"icns", "ICNS"),
    (0, b"\x00\x00\x00\x0cjP  ", "JPEG 2000"), (0, b"\xffO\xffQ", "JPEG 2000"), (0, b"\xff\x0a", "JPEG XL"),
    (0, b"\x00\x00\x00\x0cJXL ", "JPEG XL"), (0, b"v/1\x01", "OpenEXR"), (0, b"FORM", "IFF"),
    (4, b"ftypavif", "AVIF"), (4, b"ftypavis", "AVIF"), (4, b"ftypheic", "HEIF"), (4, b"ftypheix", "HEIF"),
    (4, b"ftyphevc", "HEIF"), (4, b"ftypmif1", "HEIF"), (4, b"ftypmsf1", "HEIF"),
)
# Longest side accepted: JPEG, GIF and WebP cannot exceed it anyway, while a PNG or BMP 1 pixel wide
# and 40 million tall (within the pixel limit) costs Pillow 8 bytes of row pointers per row (320 MB).
MAX_SIDE = 65535

# What Pillow raises on malformed input besides OSError: its parsers are not uniform about it.
_MALFORMED = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError, TypeError,
              NotImplementedError)
# Pillow's WebP decoder holds the frame three times over while decoding (libwebp's canvas, a bytes
# copy, Pillow's image: 610 MB at 40 MP, against 290 MB for the other formats): a WebP pixel counts
# this many times against MAX_IMAGE_PIXELS, so every format costs about the same at the limit.
WEBP_PIXEL_WEIGHT = 2

# Pixels converted at a time: a strip's intermediate copies stay a few MB whatever the image's size.
_STRIP_PIXELS = 1 << 20

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
_HIGH_DEPTH = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def decode_image(data: bytes, *, max_bytes: int, max_pixels: int) -> RGBImage:
    """Decode JPEG/PNG/WebP/BMP/GIF (first frame), apply EXIF orientation, return H×W×3 uint8."""
    with _guard():
        image = _open_checked(data, max_bytes, max_pixels)
        image.seek(0)
        image.load()
        orientation = _orientation(image)
        # Converting runs Pillow code on the file's data too (palettes, tRNS): same guard.
        rgb = to_rgb(image)
        image.close()  # Pillow's pixels go before the orientation copy below
        del image
        return _upright(rgb, orientation)


def is_plain_jpeg(data: bytes, *, max_bytes: int, max_pixels: int) -> bool:
    """Every check of :func:`decode_image` short of decoding the pixels (ImageError as there),
    then whether the file is a JPEG that any JPEG decoder gets right: colour or gray, upright.
    Such files may be decoded elsewhere (on the GPU); the rest go through ``decode_image``."""
    with _guard():
        image = _open_checked(data, max_bytes, max_pixels)
        return image.format == "JPEG" and image.mode in ("RGB", "L") and _orientation(image) == 1


def declared_pixels(data: bytes) -> int:
    """The pixels an image's header declares (0 when there is no readable header): what decoding
    it will hold in memory, known before any pixel is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data), formats=_OPENERS) as image:
                return int(image.width) * int(image.height)
    except Exception:  # noqa: BLE001 - an unreadable header: decode_image will name the problem
        return 0


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
        try:
            image = Image.open(io.BytesIO(data), formats=_OPENERS)
        except UnidentifiedImageError:
            _refuse_other_format(data)
            raise
    if image.format not in ALLOWED_FORMATS:  # never, with _OPENERS; kept as the rule's statement
        _unsupported(str(image.format))
    # Image.open has read the header only: the declared size is refused before any pixel is decoded.
    weight = WEBP_PIXEL_WEIGHT if image.format == "WEBP" else 1
    _check_pixels(image.width, image.height, max_pixels // weight, " for WebP" if weight > 1 else "")
    return image


def _unsupported(name: str) -> None:
    raise ImageError(
        "unsupported_format",
        f"Unsupported image format {name}; use JPEG, PNG, WebP, BMP or GIF.",
        status=415,
    )


def _refuse_other_format(data: bytes) -> None:
    """unsupported_format for a file that is recognisably another image format; else return."""
    if data[-18:] == b"TRUEVISION-XFILE.\x00":  # TGA has no magic at its start, a footer at its end
        _unsupported("TGA")
    for offset, magic, name in _SIGNATURES:
        if data[offset:offset + len(magic)] == magic:
            _unsupported(name)
    if data[:1] == b"P" and data[1:2] in b"1234567" and data[2:3] in (b" ", b"\t", b"\n", b"\r"):
        _unsupported("PNM")
    if data[:1] == b"\x0a" and data[1:2] in b"\x00\x02\x03\x04\x05" and data[2:3] == b"\x01":
        _unsupported("PCX")
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head[:4] == b"<svg" or (head[:5] == b"<?xml" and b"<svg" in head):
        _unsupported("SVG")


@contextlib.contextmanager
def _guard() -> Iterator[None]:
    """Pillow's many exceptions on hostile or broken files → ImageError with a clear code."""
    try:
        with warnings.catch_warnings():
            # Pillow warns of each corrupt tag it skips (and of large images): the answer is our code.
            warnings.simplefilter("ignore")
            yield
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError("image_too_large", f"The image is too large: {exc}", status=413) from exc
    except UnidentifiedImageError as exc:
        raise ImageError("not_an_image", "The file is not an image that can be decoded.") from exc
    except _MALFORMED as exc:
        raise ImageError("corrupt_image", f"The image is truncated or corrupt: {exc}") from exc
    except MemoryError as exc:  # a size the checks let through but this machine cannot hold
        raise ImageError("image_too_large", "The image is too large to decode.", status=413) from exc


def _orientation(image: Image.Image) -> int | None:
    """The EXIF orientation tag (1: upright), None when the metadata cannot be read."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns of each corrupt tag: an optional tag's noise
            orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except _MALFORMED:
        return None
    return orientation if isinstance(orientation, int) else None


def _upright(rgb: RGBImage, orientation: int | None) -> RGBImage:
    """Apply the EXIF orientation to the decoded pixels (one contiguous copy when it is not 1).
    Only the tag is read: ``ImageOps.exif_transpose`` also rewrites the EXIF block and fails
    (struct.error) on a corrupt one, rejecting a perfectly good image."""
    method = _ORIENTATION.get(orientation) if orientation is not None else None
    if method is None:  # None (unreadable metadata): keep the pixels as stored
        return rgb
    view = {
        Image.Transpose.FLIP_LEFT_RIGHT: lambda a: a[:, ::-1],
        Image.Transpose.ROTATE_180: lambda a: a[::-1, ::-1],
        Image.Transpose.FLIP_TOP_BOTTOM: lambda a: a[::-1],
        Image.Transpose.TRANSPOSE: lambda a: a.transpose(1, 0, 2),
        Image.Transpose.ROTATE_270: lambda a: a.transpose(1, 0, 2)[:, ::-1],
        Image.Transpose.TRANSVERSE: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
        Image.Transpose.ROTATE_90: lambda a: a.transpose(1, 0, 2)[::-1],
    }[method](rgb)
    return np.ascontiguousarray(view)


def _check_pixels(width: int, height: int, max_pixels: int, which: str = "") -> None:
    if width <= 0 or height <= 0:
        raise ImageError("not_an_image", "The image has no pixels.")
    if max(width, height) > MAX_SIDE:
        raise ImageError(
            "image_too_large",
            f"The image is {width}×{height}; no side may exceed {MAX_SIDE} pixels.",
            status=413,
        )
    if width * height > max_pixels:
        raise ImageError(
            "image_too_large",
            f"The image is {width}×{height} = {width * height} pixels; "
            f"the limit{which} is {max_pixels} pixels.",
            status=413,
        )


def to_rgb(image: Image.Image) -> RGBImage:
    """Any PIL mode → RGB uint8. Transparency is composited over white, 16/32-bit is rescaled.
    Converted strip by strip into the output: the conversions' copies are a strip's size."""
    width, height = image.size
    out = np.empty((height, width, 3), dtype=np.uint8)
    peak = 255.0
    if image.mode in _HIGH_DEPTH:
        # One scale for the whole image, from its extremes (no pixel copy to find them).
        high = image.getextrema()[1]  # a single-band mode: (low, high) numbers
        assert isinstance(high, (int, float))
        peak = 65535.0 if image.mode.startswith("I;16") or high > 255 else 255.0
    rows = max(1, _STRIP_PIXELS // max(width, 1))
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        strip = image if (top, bottom) == (0, height) else image.crop((0, top, width, bottom))
        out[top:bottom] = _strip_rgb(strip, peak)
    return out


def _strip_rgb(image: Image.Image, peak: float) -> np.ndarray:
    mode = image.mode
    if mode in _HIGH_DEPTH:
        array = np.asarray(image, dtype=np.float64)
        gray = np.clip(array * (255.0 / peak), 0, 255).astype(np.uint8)
        return gray[:, :, None]  # broadcast to the three channels by the caller's assignment
    if mode in ("P", "PA") or (mode in ("1", "L", "RGB") and "transparency" in image.info):
        # A palette, or a tRNS colour key on an L/RGB image: let Pillow turn it into alpha.
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)
