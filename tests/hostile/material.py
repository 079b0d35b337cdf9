"""The material every family of the hostile corpus is cut from: the :class:`Case` type, the outcome
sets, the project's photo in every accepted format, and the forged files (a declared size, or pixels
that compress to almost nothing) that more than one family needs. tests/hostile/corpus.py re-exports
all of it.
"""

from __future__ import annotations

import functools
import io
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

DATA = Path(__file__).resolve().parents[1] / "data"
PHOTO = DATA / "misc" / "obama_small.jpg"  # 320×240, one face, 33 KB
OK = "ok"
BROKEN = frozenset({"corrupt_image", "not_an_image"})
ANY_IMAGE = frozenset({OK, "corrupt_image", "not_an_image", "unsupported_format", "image_too_large"})
MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif", "BMP": "image/bmp"}
EPOCH = time.gmtime(1_767_225_600)  # the date written into files that carry one (PDF): 2026-01-01
SEED = 10  # the number: the same corpus on every run and every machine


@dataclass(frozen=True)
class Case:
    family: str
    name: str
    data: bytes
    content_type: str
    expect: frozenset[str]

    @property
    def decodes(self) -> bool:
        """Only "ok" is allowed: a valid image (the server analyses it)."""
        return self.expect == {OK}


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _photo() -> Image.Image:
    with Image.open(PHOTO) as image:
        return image.convert("RGB")


@functools.cache
def sources() -> dict[str, bytes]:
    """The real photo in every accepted format (the truncation and bit-flip material)."""
    photo = _photo()
    return {
        "JPEG": PHOTO.read_bytes(),
        "PNG": encode(photo, "PNG"),
        "WEBP": encode(photo, "WEBP", quality=80),
        "GIF": encode(photo.convert("P"), "GIF"),
        "BMP": encode(photo, "BMP"),
    }


# --- forged files: a size the pixels do not back, or pixels that weigh almost nothing ----------------

def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_of(width: int, height: int, *, bit_depth: int = 1, color: int = 0, rows: int | None = None) -> bytes:
    """A PNG of zeros declaring ``width``×``height`` (``rows`` of data: fewer than ``height`` is a
    tiny file declaring a large image). A bomb: a few KB that inflate to every pixel."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color]
    row = 1 + (width * channels * bit_depth + 7) // 8
    compressor = zlib.compressobj(9)
    left, parts = row * (height if rows is None else rows), []
    while left:  # every byte is zero (filter 0, black pixels): compressed 16 MB at a time
        step = min(left, 1 << 24)
        parts.append(compressor.compress(bytes(step)))
        left -= step
    body = b"".join(parts) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b"")


def jpeg_declaring(width: int, height: int) -> bytes:
    """The real photo with its frame header (SOF) patched to declare another size."""
    data = bytearray(PHOTO.read_bytes())
    i = 2
    while data[i + 1] not in (0xC0, 0xC1, 0xC2):
        i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    data[i + 5:i + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_declaring(width: int, height: int) -> bytes:
    data = bytearray(sources()["GIF"])
    data[6:10] = struct.pack("<HH", width, height)  # logical screen
    at = data.index(b"\x2c", 13 + 768)
    data[at + 5:at + 9] = struct.pack("<HH", width, height)  # the image itself
    return bytes(data)


def bmp_declaring(width: int, height: int) -> bytes:
    data = bytearray(sources()["BMP"])
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def webp_declaring(width: int, height: int) -> bytes:
    """A VP8X (extended) WebP whose canvas declares ``width``×``height`` around a small frame."""
    data = sources()["WEBP"]
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (
        height - 1).to_bytes(3, "little")
    body = b"WEBP" + vp8x + data[12:]
    return b"RIFF" + struct.pack("<I", len(body)) + body


def bmp_1bit(width: int, height: int) -> bytes:
    row = ((width + 31) // 32) * 4
    pixels = bytes(row * height)
    header = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 1, 0, len(pixels), 2835, 2835, 2, 0)
    palette = b"\x00\x00\x00\x00\xff\xff\xff\x00"
    offset = 14 + len(header) + len(palette)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + header + palette + pixels


def bmp_rle8(width: int, height: int) -> bytes:
    """An RLE8 BMP: runs of 255 pixels, two bytes each, then end of line (a 100:1 bomb)."""
    line = b"".join(struct.pack("BB", min(255, width - x), 7) for x in range(0, width, 255)) + b"\x00\x00"
    pixels = line * height + b"\x00\x01"
    header = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(pixels), 2835, 2835, 256, 0)
    palette = b"".join(bytes((i, i, i, 0)) for i in range(256))
    offset = 14 + len(header) + len(palette)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + header + palette + pixels
