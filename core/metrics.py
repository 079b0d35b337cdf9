"""Per-stage timings of this process since start: count, mean, min, max, p95."""

from __future__ import annotations

import threading
from collections import deque

import numpy as np

_WINDOW = 10_000  # p95 is computed over the latest samples; count/mean/min/max over all.


class _Stage:
    __slots__ = ("count", "total", "min", "max", "recent")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.min = float("inf")
        self.max = 0.0
        self.recent: deque[float] = deque(maxlen=_WINDOW)


class StageMetrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stages: dict[str, _Stage] = {}

    def record(self, timings_ms: dict[str, float]) -> None:
        with self._lock:
            for name, value in timings_ms.items():
                stage = self._stages.setdefault(name, _Stage())
                stage.count += 1
                stage.total += value
                stage.min = min(stage.min, value)
                stage.max = max(stage.max, value)
                stage.recent.append(value)

    def snapshot(self) -> dict[str, dict[str, float]]:
        with self._lock:
            return {
                name: {
                    "count": s.count,
                    "mean_ms": round(s.total / s.count, 3),
                    "min_ms": round(s.min, 3),
                    "max_ms": round(s.max, 3),
                    "p95_ms": round(float(np.percentile(np.fromiter(s.recent, float), 95)), 3),
                }
                for name, s in sorted(self._stages.items())
                if s.count
            }

    def reset(self) -> None:
        with self._lock:
            self._stages.clear()


metrics = StageMetrics()
