"""Per-stage timings of this process since start: count, mean, min, max, p95; and of this request.
Each timing is also observed in the Prometheus histogram facerec_stage_seconds."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np

from core.prometheus import STAGE_SECONDS

_WINDOW = 10_000  # p95 is computed over the latest samples; count/mean/min/max over all.
# The stage timings of the current request, summed per stage (see `request_stage_timings`).
_request_stages: ContextVar[dict[str, float] | None] = ContextVar("request_stages", default=None)


@contextmanager
def request_stage_timings(stages: dict[str, float]) -> Iterator[None]:
    """Every timing recorded in this block (this thread or context) is also added to `stages`:
    the request log shows where a request's time went without the views passing timings around."""
    token = _request_stages.set(stages)
    try:
        yield
    finally:
        _request_stages.reset(token)


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
        stages = _request_stages.get()
        if stages is not None:
            for name, value in timings_ms.items():
                stages[name] = stages.get(name, 0.0) + value
        with self._lock:
            for name, value in timings_ms.items():
                stage = self._stages.setdefault(name, _Stage())
                stage.count += 1
                stage.total += value
                stage.min = min(stage.min, value)
                stage.max = max(stage.max, value)
                stage.recent.append(value)
        for name, value in timings_ms.items():
            STAGE_SECONDS.labels(stage=name).observe(value / 1000.0)

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
