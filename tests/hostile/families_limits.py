"""The families at the server's limits: declared dimensions (``dimensions``), decompression bombs
either side of MAX_IMAGE_PIXELS (``bombs``), files either side of MAX_UPLOAD_BYTES (``sizes``) and
extreme aspect ratios within the pixel limit (``shapes``).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

from PIL import Image

from face_engine.decode import MAX_SIDE, WEBP_PIXEL_WEIGHT
from tests.hostile.material import (
    BROKEN,
    MIME,
    OK,
    PHOTO,
    Case,
    _png_chunk,
    bmp_1bit,
    bmp_declaring,
    bmp_rle8,
    encode,
    gif_declaring,
    jpeg_declaring,
    png_of,
    sources,
    webp_declaring,
)

# --- declared dimensions ---------------------------------------------------------------------------

def dimensions(max_pixels: int) -> Iterator[Case]:
    side = int(max_pixels ** 0.5)
    huge = {"JPEG": 65535, "PNG": 2**31 - 1, "GIF": 65535, "BMP": 2**31 - 1, "WEBP": 16384}
    makers = {"JPEG": jpeg_declaring, "GIF": gif_declaring, "BMP": bmp_declaring, "WEBP": webp_declaring,
              "PNG": lambda w, h: png_of(w, h, rows=1 if w < 100_000 else 0)}
    for fmt, make in makers.items():
        big = huge[fmt]
        # libwebp checks a canvas against its frame before Pillow sees the size: corrupt, or too large.
        too_large = frozenset({"image_too_large"}) | (BROKEN if fmt == "WEBP" else set())
        yield Case("dimensions", f"{fmt.lower()}-{big}x{big}", make(big, big), MIME[fmt], too_large)
        yield Case("dimensions", f"{fmt.lower()}-{big}x-over", make(big, max_pixels // big + 1), MIME[fmt], too_large)
        yield Case("dimensions", f"{fmt.lower()}-0x0", make(0, 0) if fmt != "WEBP" else make(1, 1)[:30], MIME[fmt],
                   BROKEN)
        yield Case("dimensions", f"{fmt.lower()}-0x240", make(0, 240) if fmt != "WEBP" else make(1, 1)[:31],
                   MIME[fmt], BROKEN)
        yield Case("dimensions", f"{fmt.lower()}-320x0", make(320, 0) if fmt != "WEBP" else make(1, 1)[:33],
                   MIME[fmt], BROKEN)
        # Tiny on disk, large in pixels, within the limit: the file runs out long before the pixels.
        # Decoders differ: libjpeg and zlib end early and Pillow keeps the rest blank (a success).
        if fmt == "JPEG":
            continue  # the JPEG's case is the issue's own, 6000×6600, below
        yield Case("dimensions", f"{fmt.lower()}-declares-{side}x{side}", make(side, side), MIME[fmt],
                   BROKEN | {OK, "image_too_large"} if fmt == "WEBP" else BROKEN | {OK})
    yield Case("dimensions", "jpeg-33k-declares-6000x6600", jpeg_declaring(6000, 6600), "image/jpeg", BROKEN | {OK})
    yield Case("dimensions", "bmp-negative-height", bmp_declaring(320, -240), "image/bmp", frozenset({OK}))
    yield Case("dimensions", "bmp-negative-width", bmp_declaring(-320, 240), "image/bmp",
               BROKEN | {"image_too_large"})
    yield Case("dimensions", "bmp-min-int", bmp_declaring(320, -(2**31)), "image/bmp",
               frozenset({"image_too_large"}) | BROKEN)
    yield Case("dimensions", "png-height-2^31", png_of(1, 1)[:16] + struct.pack(">II", 1, 2**31) + png_of(1, 1)[24:],
               "image/png", BROKEN | {"image_too_large"})


# --- bombs: valid files that inflate to just under / just over the pixel limit ---------------------

def bombs(max_pixels: int) -> Iterator[Case]:
    """Every accepted format just under and just over MAX_IMAGE_PIXELS (WebP, whose decoder holds
    two more copies of the image, is limited to half: see face_engine.decode)."""
    width = 6000
    under, over = max_pixels // width, max_pixels // width + 1
    webp_under, webp_over = max_pixels // WEBP_PIXEL_WEIGHT // width, max_pixels // WEBP_PIXEL_WEIGHT // width + 1
    flat_gray = lambda h: Image.new("L", (width, h), 128)  # noqa: E731
    yield Case("bombs", f"png-{width}x{under}", png_of(width, under), "image/png", frozenset({OK}))
    yield Case("bombs", f"png-{width}x{over}", png_of(width, over), "image/png", frozenset({"image_too_large"}))
    yield Case("bombs", f"png-rgba-{width}x{under}", png_of(width, under, bit_depth=8, color=6), "image/png",
               frozenset({OK}))
    yield Case("bombs", f"png-16bit-{width}x{under}", png_of(width, under, bit_depth=16, color=0), "image/png",
               frozenset({OK}))
    yield Case("bombs", f"bmp-1bit-{width}x{under}", bmp_1bit(width, under), "image/bmp", frozenset({OK}))
    yield Case("bombs", f"bmp-1bit-{width}x{over}", bmp_1bit(width, over), "image/bmp",
               frozenset({"image_too_large"}))
    yield Case("bombs", f"bmp-rle8-{width}x{under}", bmp_rle8(width, under), "image/bmp", frozenset({OK}))
    yield Case("bombs", f"bmp-rle8-{width}x{over}", bmp_rle8(width, over), "image/bmp",
               frozenset({"image_too_large"}))
    yield Case("bombs", f"jpeg-{width}x{under}", encode(flat_gray(under), "JPEG", quality=5), "image/jpeg",
               frozenset({OK}))
    yield Case("bombs", f"jpeg-{width}x{over}", encode(flat_gray(over), "JPEG", quality=5), "image/jpeg",
               frozenset({"image_too_large"}))
    yield Case("bombs", f"gif-{width}x{under}", encode(flat_gray(under).convert("P"), "GIF"), "image/gif",
               frozenset({OK}))
    yield Case("bombs", f"gif-{width}x{over}", gif_declaring(width, over), "image/gif",
               frozenset({"image_too_large"}))
    yield Case("bombs", f"webp-{width}x{webp_under}", encode(flat_gray(webp_under), "WEBP", quality=1, method=0),
               "image/webp", frozenset({OK}))
    yield Case("bombs", f"webp-{width}x{webp_over}", encode(flat_gray(webp_over), "WEBP", quality=1, method=0),
               "image/webp", frozenset({"image_too_large"}))
    # A zlib bomb in a PNG text chunk: Pillow caps decompressed text (ImageFile/PngImagePlugin limits).
    text = zlib.compress(b"A" * (64 * 1024 * 1024), 9)
    png = sources()["PNG"]
    yield Case("bombs", "png-ztxt-64mb", png[:33] + _png_chunk(b"zTXt", b"k\x00\x00" + text) + png[33:],
               "image/png", frozenset({OK, "corrupt_image"}))
    yield Case("bombs", "png-itxt-64mb", png[:33] + _png_chunk(b"iTXt", b"k\x00\x01\x00\x00\x00" + text) + png[33:],
               "image/png", frozenset({OK, "corrupt_image"}))
    yield Case("bombs", "png-iccp-64mb", png[:33] + _png_chunk(b"iCCP", b"icc\x00\x00" + text) + png[33:],
               "image/png", frozenset({OK, "corrupt_image"}))


# --- sizes around MAX_UPLOAD_BYTES -------------------------------------------------------------------------

def sizes(max_upload_bytes: int) -> Iterator[Case]:
    jpeg = PHOTO.read_bytes()

    def padded(total: int) -> bytes:  # the photo, then junk after its end: a valid JPEG of ``total`` bytes
        return jpeg + b"\x00" * (total - len(jpeg))

    yield Case("sizes", "jpeg-exactly-max", padded(max_upload_bytes), "image/jpeg", frozenset({OK}))
    yield Case("sizes", "jpeg-max-plus-1", padded(max_upload_bytes + 1), "image/jpeg", frozenset({"file_too_large"}))
    yield Case("sizes", "jpeg-max-plus-1mb", padded(max_upload_bytes + (1 << 20)), "image/jpeg",
               frozenset({"file_too_large"}))
    yield Case("sizes", "zeros-max-plus-1", b"\x00" * (max_upload_bytes + 1), "image/jpeg",
               frozenset({"file_too_large"}))
    yield Case("sizes", "jpeg-3mb", padded(3 << 20), "image/jpeg", frozenset({OK}))


# --- extreme shapes within the pixel limit -----------------------------------------------------------------

def shapes(max_pixels: int) -> Iterator[Case]:
    ok = frozenset({OK})
    too_large = frozenset({"image_too_large"})
    flat = lambda w, h: Image.new("RGB", (w, h), (90, 120, 150))  # noqa: E731
    for w, h in ((1, 40000), (40000, 1), (65500, 1), (1, 65500), (65500, max_pixels // 65500),
                 (max_pixels // 65500, 65500), (40000, 1000), (1, 1), (2, 2), (15, 15), (2048, 2048)):
        if w * h <= max_pixels:
            yield Case("shapes", f"jpeg-{w}x{h}", encode(flat(w, h), "JPEG", quality=10), "image/jpeg", ok)
    for w, h in ((1, 16383), (16383, 1), (16383, 16383 // 40)):
        yield Case("shapes", f"webp-{w}x{h}", encode(flat(w, h), "WEBP", quality=1, method=0), "image/webp", ok)
    for w, h in ((1, 40000), (40000, 1), (65535, 1), (1, 65535), (1, 100_000), (1, max_pixels), (max_pixels, 1)):
        expect = too_large if max(w, h) > MAX_SIDE else ok
        yield Case("shapes", f"png-{w}x{h}", png_of(w, h), "image/png", expect)
    for w, h in ((1, 40000), (40000, 1), (1, 100_000)):
        yield Case("shapes", f"bmp-{w}x{h}", bmp_1bit(w, h), "image/bmp", too_large if max(w, h) > MAX_SIDE else ok)
    yield Case("shapes", "gif-65535x1", encode(Image.new("P", (65535, 1)), "GIF"), "image/gif", ok)
    yield Case("shapes", "gif-1x65535", encode(Image.new("P", (1, 65535)), "GIF"), "image/gif", ok)
