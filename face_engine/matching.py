"""Distance → match decision and a documented confidence.

``confidence`` is a monotone decreasing function of the Euclidean distance d between two
embeddings, in [0, 1], equal to 0.5 exactly at the match threshold t:

    d ≤ t:  1 − d / (2t)          (1 at d = 0, 0.5 at d = t)
    d > t:  max(0, (2 − d / t) / 2)  (0.5 at d = t, 0 at d ≥ 2t)
"""

from __future__ import annotations

import numpy as np


def confidence(distance: float, threshold: float) -> float:
    if distance <= threshold:
        return float(1.0 - distance / (2.0 * threshold))
    return float(max(0.0, 0.5 * (2.0 - distance / threshold)))


def is_match(distance: float, threshold: float) -> bool:
    return bool(distance <= threshold)


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)))
