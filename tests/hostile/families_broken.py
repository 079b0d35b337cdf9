"""The families of broken files: the real photo cut short (``truncated``), damaged in place
(``bit_flips``), or behind a wrong or missing signature, as polyglots and as non-images (``magic``).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator

from tests.hostile.material import ANY_IMAGE, BROKEN, MIME, OK, SEED, Case, sources

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
