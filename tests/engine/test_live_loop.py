"""The analysis loop with the real engine: the newest frame of each stream, and a stream stopped
while its frame is being analysed opens no appearance afterwards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from face_engine.live.appearances import AppearanceTracker, Candidate
from face_engine.live.frames import Frame, LatestFrame
from face_engine.live.loop import LiveLoop, Stream

PHOTO = Path(__file__).resolve().parents[1] / "data" / "misc" / "obama-480p.jpg"


class StoppedDuringAnalysis:
    """The engine, with the stream's stop arriving while the frame is analysed (the camera's
    worker stopping it from its heartbeat thread)."""

    def __init__(self, engine, loop: LiveLoop, key) -> None:
        self.engine, self.loop, self.key = engine, loop, key

    def analyze(self, images, **options):
        results = self.engine.analyze(images, **options)
        self.loop.remove(self.key, close=False)
        return results


def test_a_stream_stopped_while_its_frame_is_analysed_opens_nothing(engine):
    image = np.asarray(Image.open(PHOTO).convert("RGB"))
    events, slot = [], LatestFrame()
    tracker = AppearanceTracker(match=lambda vectors: [[Candidate(1, 0.3)] for _ in vectors], emit=events.append)
    loop = LiveLoop(None)
    loop.pipeline = StoppedDuringAnalysis(engine, loop, "door")
    loop.add(Stream(key="door", slot=slot, appearances=tracker))
    slot.put(Frame.from_array(image, seq=1))
    assert loop.step() == 1
    assert loop.streams() == [] and events == [] and tracker.by_track == {}


def test_each_stream_gets_its_newest_frame_and_frames_not_taken_are_dropped(engine):
    image = np.asarray(Image.open(PHOTO).convert("RGB"))
    seen: list[tuple[str, int]] = []
    loop = LiveLoop(engine)
    slots = {}
    for key in ("a", "b"):
        slots[key] = LatestFrame()
        tracker = AppearanceTracker(match=lambda vectors: [[] for _ in vectors], emit=lambda event: None)
        loop.add(Stream(key=key, slot=slots[key], appearances=tracker,
                        on_result=lambda frame, tracked, timings, key=key: seen.append((key, frame.seq))))
    for seq in (1, 2, 3):
        slots["a"].put(Frame.from_array(image, seq=seq))
    slots["b"].put(Frame.from_array(image, seq=7))
    assert loop.step() == 2  # both streams due: one batch
    assert sorted(seen) == [("a", 3), ("b", 7)]
    assert slots["a"].dropped == 2 and slots["b"].dropped == 0
    assert loop.step() == 0  # nothing new
