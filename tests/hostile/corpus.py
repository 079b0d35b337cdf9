"""The corpus of hostile uploads: generated deterministically from the project's photos, never stored.

    from tests.hostile.corpus import build
    cases = build(max_upload_bytes=10 * 1024 * 1024, max_image_pixels=40_000_000)

Each :class:`Case` names its family, its bytes, the content type a client would send and the outcomes
the service may give it: ``"ok"`` (decoded: a recognition, or ``no_face``/``multiple_faces`` where a
face is required) or an image error code of docs/api.md. Where the outcome is fixed by the file (a
declared size over the limit, an unsupported format) one code is expected; where it depends on where
a decoder notices the damage (a flipped bit in entropy-coded data may decode or not), the set lists
the codes that are correct for the damage done. The limits are parameters: the corpus probes the
edges of the server's own settings.
"""

from __future__ import annotations

import functools
import io
import random
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from face_engine.decode import MAX_SIDE, WEBP_PIXEL_WEIGHT

DATA = Path(__file__).resolve().parents[1] / "data"
PHOTO = DATA / "misc" / "obama_small.jpg"  # 320×240, one face, 33 KB
OK = "ok"
BROKEN = frozenset({"corrupt_image", "not_an_image"})
ANY_IMAGE = frozenset({OK, "corrupt_image", "not_an_image", "unsupported_format", "image_too_large"})
MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif", "BMP": "image/bmp"}
EPOCH = time.gmtime(1_767_225_600)  # the date written into files that carry one (PDF): 2026-01-01
SEED = 10  # the issue's number: the same corpus on every run and every machine


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


# --- structure: where the segments / chunks / blocks of each format begin ------------------------

def jpeg_boundaries(data: bytes) -> list[int]:
    """Offsets of each marker segment up to the scan, then of the end-of-image marker."""
    out, i = [0, 2], 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
        i += 2 + length
        out.append(i)
        if marker == 0xDA:  # start of scan: entropy-coded data runs to EOI
            break
    out.append(data.rfind(b"\xff\xd9"))
    return out


def png_boundaries(data: bytes) -> list[int]:
    out, i = [8], 8
    while i + 8 <= len(data):
        (length,) = struct.unpack(">I", data[i:i + 4])
        out += [i + 4, i + 8]  # the chunk's type, its data
        i += 12 + length
        out.append(i)
    return out


def webp_boundaries(data: bytes) -> list[int]:
    out, i = [4, 8, 12], 12
    while i + 8 <= len(data):
        (length,) = struct.unpack("<I", data[i + 4:i + 8])
        out.append(i + 8)
        i += 8 + length + (length & 1)
        out.append(i)
    return out


def gif_boundaries(data: bytes) -> list[int]:
    """Header, screen descriptor, colour table, each extension, the image descriptor, and every
    tenth LZW sub-block."""
    table = 3 * (2 << (data[10] & 7)) if data[10] & 0x80 else 0
    out, i = [6, 13, 13 + table], 13 + table
    blocks = 0
    while i < len(data) and data[i] != 0x3B:
        if data[i] == 0x21:  # extension: label, then sub-blocks
            i += 2
        elif data[i] == 0x2C:  # image descriptor (10 bytes, local table, LZW minimum code size)
            flags = data[i + 9]
            i += 10 + (3 * (2 << (flags & 7)) if flags & 0x80 else 0) + 1
        else:
            break
        out.append(i)
        while i < len(data) and data[i] != 0:
            i += 1 + data[i]
            blocks += 1
            if blocks % 10 == 0:
                out.append(i)
        i += 1
        out.append(i)
    return out


def bmp_boundaries(data: bytes) -> list[int]:
    (offset,) = struct.unpack("<I", data[10:14])
    (header,) = struct.unpack("<I", data[14:18])
    row = (len(data) - offset) // abs(struct.unpack("<i", data[22:26])[0])
    return [2, 6, 10, 14, 18, 22, 26, 14 + header, offset, offset + row, offset + 10 * row]


BOUNDARIES = {"JPEG": jpeg_boundaries, "PNG": png_boundaries, "WEBP": webp_boundaries, "GIF": gif_boundaries,
              "BMP": bmp_boundaries}
# How many bytes at a file's end carry no pixels (an end marker or chunk): cutting only those may decode.
TRAILER = {"JPEG": 2, "PNG": 16, "WEBP": 0, "GIF": 3, "BMP": 0}  # PNG: the last CRC, IEND


def truncations(rng: random.Random) -> Iterator[Case]:
    for fmt, data in sources().items():
        cuts = set()
        for b in BOUNDARIES[fmt](data):
            cuts |= {b - 1, b, b + 1}
        cuts |= {rng.randrange(1, len(data)) for _ in range(96)}
        cuts |= {1, 2, 3, 4, 8, 16, 32, 64, 128, 256, 512}
        for cut in sorted(c for c in cuts if 0 < c < len(data)):
            expect = BROKEN | ({OK} if cut >= len(data) - TRAILER[fmt] else set())
            yield Case("truncated", f"{fmt.lower()}-at-{cut}", data[:cut], MIME[fmt], frozenset(expect))
        yield Case("truncated", f"{fmt.lower()}-at-0", b"", MIME[fmt], frozenset({"empty_file"}))


def bit_flips(rng: random.Random, per_format: int = 40) -> Iterator[Case]:
    """Single bits flipped, bytes zeroed and runs overwritten, anywhere in the file: whatever the
    decoder makes of it, the answer is a decoded image or an image error, never a server error."""
    for fmt, data in sources().items():
        for n in range(per_format):
            damaged = bytearray(data)
            kind = n % 3
            at = rng.randrange(len(data)) if n % 4 else rng.randrange(min(len(data), 256))  # headers often
            if kind == 0:
                damaged[at] ^= 1 << rng.randrange(8)
            elif kind == 1:
                damaged[at:at + 4] = b"\x00" * len(damaged[at:at + 4])
            else:
                run = rng.randbytes(rng.randrange(1, 64))
                damaged[at:at + len(run)] = run
            yield Case("bit_flips", f"{fmt.lower()}-{('bit', 'zero', 'run')[kind]}-{at}-{n}", bytes(damaged),
                       MIME[fmt], ANY_IMAGE)


def wrong_magic() -> Iterator[Case]:
    src = sources()
    jpeg, png = src["JPEG"], src["PNG"]
    for fmt, data in src.items():
        yield Case("magic", f"{fmt.lower()}-magic-zeroed", b"\x00" * 8 + data[8:], MIME[fmt], BROKEN)
        yield Case("magic", f"{fmt.lower()}-as-octet-stream", data, "application/octet-stream", frozenset({OK}))
        yield Case("magic", f"{fmt.lower()}-as-text-plain", data, "text/plain", frozenset({OK}))
        yield Case("magic", f"{fmt.lower()}-reversed", data[::-1], MIME[fmt], BROKEN)
    body = [
        ("png-magic-jpeg-body", b"\x89PNG\r\n\x1a\n" + jpeg[2:], "image/png", BROKEN),
        ("jpeg-magic-png-body", b"\xff\xd8\xff\xe0" + png[8:], "image/jpeg", BROKEN),
        # The JPEG's bytes read as a GIF screen size: 65496×57344, over the limit.
        ("gif-magic-jpeg-body", b"GIF89a" + jpeg, "image/gif", frozenset({"image_too_large"})),
        ("bmp-magic-jpeg-body", b"BM" + jpeg, "image/bmp", BROKEN),
        ("riff-webp-jpeg-body", b"RIFF" + struct.pack("<I", len(jpeg) + 4) + b"WEBPVP8 " + jpeg, "image/webp",
         BROKEN),
        ("soi-only", b"\xff\xd8", "image/jpeg", BROKEN),
        ("soi-eoi", b"\xff\xd8\xff\xd9", "image/jpeg", BROKEN),
        ("png-signature-only", b"\x89PNG\r\n\x1a\n", "image/png", BROKEN),
        ("gif-header-only", b"GIF89a", "image/gif", BROKEN),
        ("html", b"<!doctype html><html><body><script>alert(1)</script></body></html>", "text/html", BROKEN),
        ("html-as-jpeg", b"<html><img src=x onerror=alert(1)></html>", "image/jpeg", BROKEN),
        ("json", b'{"image": "obama.jpg"}', "application/json", BROKEN),
        ("php", b"<?php system($_GET['c']); ?>", "image/jpeg", BROKEN),
        ("zeros-4k", b"\x00" * 4096, "image/jpeg", BROKEN),
        ("ones-4k", b"\xff" * 4096, "image/jpeg", BROKEN),
        ("one-byte", b"\xff", "image/jpeg", BROKEN),
        ("nul", b"\x00", "image/png", BROKEN),
        ("random-64k", random.Random(SEED).randbytes(65536), "image/jpeg", BROKEN),
        ("utf8-bom-text", "\ufeffnot an image \u2603".encode(), "image/png", BROKEN),
        # Polyglots: a valid image with something else after its end, or a zip/HTML in its comment.
        ("jpeg-then-zip", jpeg + b"PK\x03\x04" + b"\x00" * 26 + b"evil.php", "image/jpeg", frozenset({OK})),
        ("jpeg-then-html", jpeg + b"<script>alert(1)</script>", "image/jpeg", frozenset({OK})),
        ("png-then-pdf", png + b"%PDF-1.4\n%%EOF\n", "image/png", frozenset({OK})),
        ("jpeg-comment-php", jpeg[:2] + b"\xff\xfe" + struct.pack(">H", 32) + b"<?php phpinfo(); ?>".ljust(30)
         + jpeg[2:], "image/jpeg", frozenset({OK})),
        ("gifar", src["GIF"] + b"PK\x05\x06" + b"\x00" * 18, "image/gif", frozenset({OK})),
    ]
    for name, data, mime, expect in body:
        yield Case("magic", name, data, mime, frozenset(expect))


# --- declared dimensions ---------------------------------------------------------------------------

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



def build(*, max_upload_bytes: int, max_image_pixels: int) -> list[Case]:
    rng = random.Random(SEED)
    families = [
        truncations(rng), bit_flips(rng), wrong_magic(), dimensions(max_image_pixels), bombs(max_image_pixels),
        metadata(rng, max_upload_bytes), modes(), unsupported(), sizes(max_upload_bytes), shapes(max_image_pixels),
    ]
    return [case for family in families for case in family]
