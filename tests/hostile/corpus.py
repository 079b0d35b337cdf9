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

The families live in families_broken.py (truncated, bit_flips, magic), families_limits.py
(dimensions, bombs, sizes, shapes) and families_formats.py (metadata, modes, unsupported), the
material they share in material.py; every name stays importable from here.
"""

from __future__ import annotations

import random

from tests.hostile.families_broken import (
    BOUNDARIES,
    TRAILER,
    bit_flips,
    bmp_boundaries,
    gif_boundaries,
    jpeg_boundaries,
    png_boundaries,
    truncations,
    webp_boundaries,
    wrong_magic,
)
from tests.hostile.families_formats import metadata, modes, unsupported
from tests.hostile.families_limits import bombs, dimensions, shapes, sizes
from tests.hostile.material import (
    ANY_IMAGE,
    BROKEN,
    DATA,
    EPOCH,
    MIME,
    OK,
    PHOTO,
    SEED,
    Case,
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

__all__ = [
    "ANY_IMAGE", "BOUNDARIES", "BROKEN", "DATA", "EPOCH", "MIME", "OK", "PHOTO", "SEED", "TRAILER", "Case",
    "bit_flips", "bmp_1bit", "bmp_boundaries", "bmp_declaring", "bmp_rle8", "bombs", "build", "dimensions",
    "encode", "gif_boundaries", "gif_declaring", "jpeg_boundaries", "jpeg_declaring", "metadata", "modes",
    "png_boundaries", "png_of", "shapes", "sizes", "sources", "truncations", "unsupported", "webp_boundaries",
    "webp_declaring", "wrong_magic",
]


def build(*, max_upload_bytes: int, max_image_pixels: int) -> list[Case]:
    rng = random.Random(SEED)
    # truncations, bit_flips and metadata draw from the one generator in this order (each family is
    # consumed before the next starts): reordering them changes the corpus.
    families = [
        truncations(rng), bit_flips(rng), wrong_magic(), dimensions(max_image_pixels), bombs(max_image_pixels),
        metadata(rng, max_upload_bytes), modes(), unsupported(), sizes(max_upload_bytes), shapes(max_image_pixels),
    ]
    return [case for family in families for case in family]
