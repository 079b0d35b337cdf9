"""dlib-style jitter of a face chip, for enrolment: embed several perturbed copies, average them.

Follows dlib's ``jitter_image`` (dlib/image_transforms/interpolation.h, what face_recognition's
``num_jitters`` uses): the chip's inner square (3 px in from each side) is moved by up to ±2 % of
its side, enlarged by a factor in [1/0.99999, 1/0.97], rotated by up to ±3°, resampled
(bilinear, black outside) back to the chip's size, and mirrored left-right half the time.

Unlike dlib, whose random generator is process-global, the perturbations depend on ``seed`` only,
and the first chip is the original: ``jitter_chips(chip, n, seed)`` is a prefix of
``jitter_chips(chip, m, seed)`` for n ≤ m. The enrolled embedding is the plain mean of the
chips' embeddings (as dlib averages its jittered descriptors).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from face_engine.types import RGBImage

INSET = 3  # px trimmed from each side before perturbing (dlib: shrink_rect(get_rect(img), 3))
TRANSLATE = 0.02  # of the inner square's side, each axis
MIN_OBJECT_HEIGHT, MAX_OBJECT_HEIGHT = 0.97, 0.99999  # crop side = inner side / uniform(min, max)
MAX_ROTATION_DEGREES = 3.0


def _jitter(chip: RGBImage, rng: np.random.Generator) -> RGBImage:
    size = chip.shape[0]
    inner = size - 2 * INSET
    tx, ty = rng.uniform(-TRANSLATE, TRANSLATE, size=2) * inner
    crop = inner / rng.uniform(MIN_OBJECT_HEIGHT, MAX_OBJECT_HEIGHT)
    angle = math.radians(rng.uniform(-MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES))
    mirror = rng.random() > 0.5

    # Output pixel p → source (k·R)·(p − centre) + centre + t, written for PIL's pixel-centre
    # convention (pixel i covers [i, i+1)), in which the centre is size/2.
    k = crop / size
    cos, sin = k * math.cos(angle), k * math.sin(angle)
    half = size / 2.0
    affine = (cos, -sin, half + tx - (cos * half - sin * half),
              sin, cos, half + ty - (sin * half + cos * half))
    out = np.asarray(Image.fromarray(chip).transform(
        (size, size), Image.Transform.AFFINE, affine, resample=Image.Resampling.BILINEAR, fillcolor=(0, 0, 0)
    ))
    return np.ascontiguousarray(out[:, ::-1] if mirror else out)


def jitter_chips(chip: np.ndarray, count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` chips: ``chip`` itself (a copy), then ``count − 1`` jittered copies.

    ``chip`` is a square H×H×3 uint8 face chip (150×150 from the aligner); every returned chip has
    its shape and dtype. The same ``(chip, count, seed)`` always gives the same chips.
    """
    if chip.ndim != 3 or chip.shape[0] != chip.shape[1] or chip.shape[2] != 3 or chip.dtype != np.uint8:
        raise ValueError(f"expected a square H×H×3 uint8 chip, got {chip.dtype} {chip.shape}")
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    chip = np.ascontiguousarray(chip)
    rng = np.random.default_rng(seed)
    return [chip.copy()] + [_jitter(chip, rng) for _ in range(count - 1)]
