"""The families of valid or foreign formats: metadata a decoder must survive (``metadata``), every
mode Pillow holds in the accepted formats (``modes``) and the formats the service refuses
(``unsupported``).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator

from PIL import Image

from tests.hostile.material import BROKEN, EPOCH, OK, PHOTO, Case, _photo, _png_chunk, bmp_rle8, encode, sources

# --- metadata ---------------------------------------------------------------------------------------

def metadata(rng: random.Random, max_upload_bytes: int) -> Iterator[Case]:
    photo = _photo()
    icc_size = min(4 * 1024 * 1024, max_upload_bytes // 2)
    icc = rng.randbytes(icc_size)
    yield Case("metadata", "jpeg-icc-4mb-garbage", encode(photo, "JPEG", icc_profile=icc), "image/jpeg",
               frozenset({OK}))
    # Pillow caps a PNG's decompressed iCCP at 1 MB (MAX_TEXT_CHUNK): a larger one is refused as corrupt.
    yield Case("metadata", "png-icc-4mb-garbage", encode(photo, "PNG", icc_profile=icc), "image/png",
               frozenset({"corrupt_image"}))
    yield Case("metadata", "png-icc-512k-garbage", encode(photo, "PNG", icc_profile=icc[:512 * 1024]), "image/png",
               frozenset({OK}))
    yield Case("metadata", "webp-icc-4mb-garbage", encode(photo, "WEBP", icc_profile=icc), "image/webp",
               frozenset({OK}))
    for orientation in (0, 9, 255, 65535):
        exif = Image.Exif()
        exif[0x0112] = orientation
        yield Case("metadata", f"jpeg-orientation-{orientation}", encode(photo, "JPEG", exif=exif.tobytes()),
                   "image/jpeg", frozenset({OK}))
    for n in range(8):
        garbage = b"Exif\x00\x00" + (b"MM\x00\x2a" if n % 2 else b"II\x2a\x00") + rng.randbytes(64 << n)
        segment = b"\xff\xe1" + struct.pack(">H", len(garbage) + 2) + garbage
        yield Case("metadata", f"jpeg-exif-garbage-{64 << n}", PHOTO.read_bytes()[:2] + segment
                   + PHOTO.read_bytes()[2:], "image/jpeg", frozenset({OK}))
    # An EXIF IFD that points into itself, and one whose count is 2^32-1.
    loop = b"Exif\x00\x00II\x2a\x00\x08\x00\x00\x00\x01\x00\x69\x87\x04\x00\x01\x00\x00\x00\x08\x00\x00\x00"
    huge = b"Exif\x00\x00II\x2a\x00\x08\x00\x00\x00\x01\x00\x12\x01\x03\x00\xff\xff\xff\xff\x08\x00\x00\x00"
    for name, garbage in (("ifd-loop", loop), ("ifd-count-4g", huge)):
        segment = b"\xff\xe1" + struct.pack(">H", len(garbage) + 2) + garbage
        yield Case("metadata", f"jpeg-exif-{name}", PHOTO.read_bytes()[:2] + segment + PHOTO.read_bytes()[2:],
                   "image/jpeg", frozenset({OK}))
    many = b"".join(b"\xff\xfe" + struct.pack(">H", 65535) + b"C" * 65533 for _ in range(60))
    yield Case("metadata", "jpeg-60-comments-64k", PHOTO.read_bytes()[:2] + many + PHOTO.read_bytes()[2:],
               "image/jpeg", frozenset({OK}))
    png = sources()["PNG"]
    chunks = b"".join(_png_chunk(b"tEXt", b"k%d\x00" % i + b"v" * 1000) for i in range(2000))
    yield Case("metadata", "png-2000-text-chunks", png[:33] + chunks + png[33:], "image/png", frozenset({OK}))
    yield Case("metadata", "png-unknown-critical-chunk", png[:33] + _png_chunk(b"ZZZZ", b"x") + png[33:], "image/png",
               BROKEN | {OK})
    yield Case("metadata", "png-bad-crc", png[:29] + b"\x00\x00\x00\x00" + png[33:], "image/png", BROKEN)


# --- modes: valid images Pillow holds in every mode ---------------------------------------------------

def modes() -> Iterator[Case]:
    photo = _photo()
    ok = frozenset({OK})
    items = [
        ("jpeg-cmyk", encode(photo.convert("CMYK"), "JPEG"), "image/jpeg"),
        ("jpeg-gray", encode(photo.convert("L"), "JPEG"), "image/jpeg"),
        ("jpeg-progressive", encode(photo, "JPEG", progressive=True), "image/jpeg"),
        ("jpeg-444", encode(photo, "JPEG", subsampling=0), "image/jpeg"),
        ("jpeg-mpo", encode(photo, "MPO", save_all=True, append_images=[photo]), "image/jpeg"),
        ("png-16bit-gray", encode(photo.convert("L").convert("I").point(lambda v: v * 257).convert("I;16"), "PNG"),
         "image/png"),
        ("png-palette", encode(photo.convert("P"), "PNG"), "image/png"),
        ("png-palette-transparent", encode(photo.convert("P"), "PNG", transparency=0), "image/png"),
        ("png-la", encode(photo.convert("LA"), "PNG"), "image/png"),
        ("png-rgba", encode(photo.convert("RGBA"), "PNG"), "image/png"),
        ("png-1bit", encode(photo.convert("1"), "PNG"), "image/png"),
        ("png-rgb-colour-key", encode(photo, "PNG", transparency=(0, 0, 0)), "image/png"),
        ("png-animated", encode(photo, "PNG", save_all=True, append_images=[photo.rotate(90)] * 3), "image/png"),
        ("gif-animated", encode(photo.convert("P"), "GIF", save_all=True, append_images=[photo.convert("P")] * 5,
                                duration=40, loop=0), "image/gif"),
        ("gif-transparent", encode(photo.convert("P"), "GIF", transparency=0), "image/gif"),
        ("webp-lossless", encode(photo, "WEBP", lossless=True), "image/webp"),
        ("webp-alpha", encode(photo.convert("RGBA"), "WEBP"), "image/webp"),
        ("webp-animated", encode(photo, "WEBP", save_all=True, append_images=[photo.rotate(90)] * 3), "image/webp"),
        ("bmp-8bit", encode(photo.convert("P"), "BMP"), "image/bmp"),
        ("bmp-1bit", encode(photo.convert("1"), "BMP"), "image/bmp"),
        ("bmp-gray", encode(photo.convert("L"), "BMP"), "image/bmp"),
        ("bmp-rle8-small", bmp_rle8(320, 240), "image/bmp"),
    ]
    for name, data, mime in items:
        yield Case("modes", name, data, mime, ok)


# --- unsupported formats ---------------------------------------------------------------------------------

def unsupported() -> Iterator[Case]:
    photo = _photo()
    refused = frozenset({"unsupported_format"})
    ftyp = lambda brand: struct.pack(">I", 24) + b"ftyp" + brand + b"\x00\x00\x00\x00" + brand + b"mif1"  # noqa: E731
    items = [
        ("tiff", encode(photo, "TIFF"), "image/tiff", refused),
        ("tiff-jpeg-inside", encode(photo, "TIFF", compression="jpeg"), "image/tiff", refused),
        ("ico", encode(photo, "ICO"), "image/x-icon", refused),
        ("ppm", encode(photo, "PPM"), "image/x-portable-pixmap", refused),
        ("tga", encode(photo, "TGA"), "image/x-tga", refused),
        ("pcx", encode(photo, "PCX"), "image/x-pcx", refused),
        ("qoi", encode(photo, "QOI"), "image/qoi", refused),
        ("avif", encode(photo, "AVIF"), "image/avif", refused),
        ("avif-header-only", ftyp(b"avif") + b"\x00" * 64, "image/avif", refused),
        ("heic-header-only", ftyp(b"heic") + b"\x00" * 64, "image/heic", refused),
        ("heic-as-jpeg", ftyp(b"heic") + PHOTO.read_bytes(), "image/jpeg", refused),
        ("svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="320" height="240"><rect width="9" height="9"/>'
                b'</svg>', "image/svg+xml", refused),
        ("svg-billion-laughs", b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;'
                               b'&a;&a;">]><svg>&b;</svg>', "image/svg+xml", refused),
        ("pdf", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", "application/pdf", refused),
        ("pdf-from-pillow", encode(photo, "PDF", dpi=(72, 72), creationDate=EPOCH, modDate=EPOCH), "application/pdf",
         refused),
        ("eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 320 240\nshowpage\n", "application/postscript",
         refused),
        ("psd-header", b"8BPS\x00\x01" + b"\x00" * 6 + b"\x00\x03" + struct.pack(">II", 240, 320) + b"\x00\x08\x00\x03",
         "image/vnd.adobe.photoshop", refused),
        ("jpeg2000-header", b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\x00" * 64, "image/jp2", refused),
        ("dds-header", b"DDS " + struct.pack("<I", 124) + b"\x00" * 120, "image/vnd-ms.dds", refused),
    ]
    for name, data, mime, expect in items:
        yield Case("unsupported", name, data, mime, expect)
