"""Faces followed across the analysed frames of one stream: IoU matching solved as an assignment.

At 5 analysed frames a second a walking face moves far between two frames, sometimes farther than
its own width (IoU 0). Pairs that do not overlap enough may still match on the distance between
their centres relative to the face's size, at a higher cost than any overlapping pair, so overlap
wins whenever there is any.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from face_engine.types import BoundingBox

_IMPOSSIBLE = 1e6


def iou(a: BoundingBox, b: BoundingBox) -> float:
    left, right = max(a.left, b.left), min(a.right, b.right)
    top, bottom = max(a.top, b.top), min(a.bottom, b.bottom)
    inter = max(0, right - left) * max(0, bottom - top)
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def _centre(box: BoundingBox) -> tuple[float, float]:
    return (box.left + box.right) / 2.0, (box.top + box.bottom) / 2.0


def _size(box: BoundingBox) -> float:
    return math.sqrt(max(1, box.area))


@dataclass
class Track:
    id: int
    box: BoundingBox
    first_seen: float  # the stream time (Frame.received_at) of its first frame
    last_seen: float
    hits: int = 1


class IouTracker:
    """``update`` with one frame's boxes returns the track id of each box; tracks not seen for
    ``lost_after`` seconds end (``expire``)."""

    def __init__(self, *, min_iou: float = 0.2, max_shift: float = 1.5, max_scale: float = 1.6,
                 lost_after: float = 1.0) -> None:
        self.min_iou = min_iou
        self.max_shift = max_shift  # centre distance / face size
        self.max_scale = max_scale  # size ratio between two frames
        self.lost_after = lost_after
        self.tracks: dict[int, Track] = {}
        self._next_id = 1

    def _cost(self, track: Track, box: BoundingBox) -> float:
        overlap = iou(track.box, box)
        if overlap >= self.min_iou:
            return 1.0 - overlap
        size_a, size_b = _size(track.box), _size(box)
        if max(size_a, size_b) / min(size_a, size_b) > self.max_scale:
            return _IMPOSSIBLE
        (xa, ya), (xb, yb) = _centre(track.box), _centre(box)
        shift = math.hypot(xa - xb, ya - yb) / ((size_a + size_b) / 2.0)
        return 1.0 + shift if shift <= self.max_shift else _IMPOSSIBLE

    def update(self, boxes: Sequence[BoundingBox], now: float) -> list[int]:
        live = list(self.tracks.values())
        assigned: list[int | None] = [None] * len(boxes)
        if live and boxes:
            cost = np.array([[self._cost(track, box) for box in boxes] for track in live])
            rows, cols = linear_sum_assignment(cost)
            for row, col in zip(rows, cols, strict=True):
                if cost[row, col] < _IMPOSSIBLE:
                    track = live[row]
                    track.box, track.last_seen, track.hits = boxes[col], now, track.hits + 1
                    assigned[col] = track.id
        ids: list[int] = []
        for box, track_id in zip(boxes, assigned, strict=True):
            if track_id is None:
                track_id = self._next_id
                self._next_id += 1
                self.tracks[track_id] = Track(id=track_id, box=box, first_seen=now, last_seen=now)
            ids.append(track_id)
        return ids

    def expire(self, now: float) -> list[Track]:
        """Remove and return the tracks not seen for ``lost_after`` seconds."""
        ended = [t for t in self.tracks.values() if now - t.last_seen >= self.lost_after]
        for track in ended:
            del self.tracks[track.id]
        return ended

    def end_all(self) -> list[Track]:
        ended = list(self.tracks.values())
        self.tracks.clear()
        return ended
