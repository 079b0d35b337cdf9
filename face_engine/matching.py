"""Distance → match decision and a documented confidence.

``confidence`` is a monotone decreasing function of the Euclidean distance d between two
embeddings, in [0, 1], equal to 0.5 exactly at the match threshold t:

    confidence = max(0, 1 − d / (2t))      (1 at d = 0, 0.5 at d = t, 0 from d = 2t on)
"""

from __future__ import annotations

import math

import numpy as np


def confidence(distance: float, threshold: float) -> float:
    # Whatever the caller passes (a zero threshold, a NaN distance), never a division by zero or a NaN.
    if not threshold > 0 or math.isnan(distance):
        return 1.0 if distance <= 0 else 0.0
    return float(min(1.0, max(0.0, 1.0 - distance / (2.0 * threshold))))


def is_match(distance: float, threshold: float) -> bool:
    return bool(distance <= threshold)


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)))
