"""Tracking and the appearance vote: the logic on its own, then on frames made from real photos
with the real weights (people walk in, stay, leave, come back; a stranger; two at once)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from face_engine.live.appearances import AppearanceTracker, Attempt, Candidate, VotePolicy, decide
from face_engine.live.tracker import IouTracker, iou
from face_engine.types import BoundingBox

DATA = Path(__file__).resolve().parents[1] / "data"
POLICY = VotePolicy()


def box(left: int, top: int, size: int = 100) -> BoundingBox:
    return BoundingBox(top=top, right=left + size, bottom=top + size, left=left)


# ---- the vote -----------------------------------------------------------------------------------

def attempt(person: int | None, distance: float, margin: float = 1.0, weight: float = 1.0) -> Attempt:
    return Attempt(person_id=person, distance=distance, margin=margin, weight=weight)


def test_one_confident_view_with_a_margin_names_at_once():
    assert decide([attempt(7, 0.42)], POLICY) == (True, 7)


def test_a_close_runner_up_or_a_borderline_distance_waits_for_a_second_view():
    assert decide([attempt(7, 0.42, margin=0.02)], POLICY) == (False, None)
    assert decide([attempt(7, 0.55)], POLICY) == (False, None)
    assert decide([attempt(7, 0.55), attempt(7, 0.57)], POLICY) == (True, 7)


def test_unknown_needs_three_views_and_a_lone_match_among_unknowns_does_not_name():
    assert decide([attempt(None, 0.8), attempt(None, 0.7)], POLICY) == (False, None)
    assert decide([attempt(None, 0.8), attempt(None, 0.7), attempt(None, 0.9)], POLICY) == (True, None)
    assert decide([attempt(None, 0.8), attempt(3, 0.58), attempt(None, 0.7), attempt(None, 0.75)],
                  POLICY) == (True, None)


def test_disagreeing_views_are_settled_at_the_last_attempt_by_weight():
    views = [attempt(1, 0.56), attempt(2, 0.55), attempt(1, 0.52, weight=1.0), attempt(2, 0.59, weight=0.3),
             attempt(None, 0.7, weight=0.2)]
    assert decide(views[:4], POLICY)[0] is False or decide(views[:4], POLICY) == (True, 1)
    assert decide(views, POLICY) == (True, 1)


def test_a_track_that_ends_is_decided_with_what_it_has_and_a_tie_goes_to_unknown():
    assert decide([attempt(5, 0.58)], POLICY, final=True) == (True, 5)
    assert decide([attempt(5, 0.6, weight=1.0), attempt(None, 0.7, weight=0.5)], POLICY, final=True) == (True, None)
    assert decide([], POLICY, final=True) == (False, None)


# ---- the tracker --------------------------------------------------------------------------------

def test_overlapping_boxes_keep_their_track_and_a_far_box_starts_another():
    tracker = IouTracker()
    first = tracker.update([box(100, 100), box(600, 100)], 0.0)
    assert tracker.update([box(110, 105), box(590, 100)], 0.2) == first
    assert tracker.update([box(1000, 500)], 0.4)[0] not in first


def test_a_face_moving_more_than_its_width_between_frames_is_followed_by_its_centre():
    tracker = IouTracker()
    [track] = tracker.update([box(100, 100)], 0.0)
    assert iou(box(100, 100), box(220, 100)) == 0
    assert tracker.update([box(220, 100)], 0.2) == [track]
    assert tracker.update([box(220, 100, size=300)], 0.4) != [track]  # tripled in size: someone else


def test_tracks_unseen_for_the_timeout_end():
    tracker = IouTracker(lost_after=1.0)
    [track] = tracker.update([box(0, 0)], 0.0)
    assert tracker.expire(0.9) == []
    assert [t.id for t in tracker.expire(1.0)] == [track]
    assert tracker.tracks == {}


# ---- appearances on frames made from real photos -----------------------------------------------

FRAME_W, FRAME_H = 1280, 720
STEP = 0.2  # 5 analysed frames a second


@pytest.fixture(scope="module")
def portraits(engine):
    """Head-and-shoulders crops of held-out photos, each with its face about 150 px wide."""
    found = {}
    for name, path, which in [("obama", "people/test/obama1.jpg", 0), ("stranger", "misc/lin-manuel-miranda.png", 0),
                              ("biden", "people/test/obama_and_biden.jpg", "biden")]:
        image = np.asarray(Image.open(DATA / path).convert("RGB"))
        faces = sorted(engine.analyze([image])[0].faces, key=lambda f: f.box.left)
        face = faces[0] if which == "biden" else faces[which]  # Biden is the leftmost face of that photo
        scale = 150 / face.box.width
        b = face.box
        pad_x, pad_y = int(b.width * 0.8), int(b.height * 0.8)
        crop = image[max(0, b.top - pad_y):b.bottom + pad_y, max(0, b.left - pad_x):b.right + pad_x]
        resized = Image.fromarray(crop).resize((round(crop.shape[1] * scale), round(crop.shape[0] * scale)))
        found[name] = np.asarray(resized)
    return found


@pytest.fixture(scope="module")
def gallery(engine):
    """person id → enrolled embeddings, from the training photos (Obama 1, Biden 2)."""
    vectors = {}
    for person_id, folder in [(1, "obama"), (2, "biden"), (3, "kit_harington"), (4, "rose_leslie")]:
        for path in sorted((DATA / "people" / "train" / folder).iterdir()):
            image = np.asarray(Image.open(path).convert("RGB"))
            vectors.setdefault(person_id, []).append(engine.analyze([image])[0].faces[0].embedding)
    return vectors


def matcher(gallery):
    def match(embeddings):
        out = []
        for vector in embeddings:
            nearest = [Candidate(pid, min(float(np.linalg.norm(vector - v)) for v in vs))
                       for pid, vs in gallery.items()]
            out.append(sorted(nearest, key=lambda c: c.distance))
        return out

    return match


def frame(*placed: tuple[np.ndarray, int, int]) -> np.ndarray:
    canvas = np.full((FRAME_H, FRAME_W, 3), 90, dtype=np.uint8)
    for portrait, left, top in placed:
        h, w = portrait.shape[:2]
        x0, y0 = max(0, left), max(0, top)
        x1, y1 = min(FRAME_W, left + w), min(FRAME_H, top + h)
        if x1 > x0 and y1 > y0:
            canvas[y0:y1, x0:x1] = portrait[y0 - top:y1 - top, x0 - left:x1 - left]
    return canvas


class Run:
    """Feeds frames at 5 fps into an AppearanceTracker whose clock is the frames' time, or
    ``lag`` seconds ahead of it (a slow analysis)."""

    def __init__(self, engine, gallery, lag: float = 0.0) -> None:
        self.engine, self.now, self.events = engine, 1000.0, []
        self.tracker = AppearanceTracker(match=matcher(gallery), emit=self.events.append,
                                         clock=lambda: self.now + lag)
        self._cache: dict[bytes, object] = {}

    def show(self, image: np.ndarray, count: int = 1):
        shown = []
        for _ in range(count):
            key = image.tobytes()[::997]
            if key not in self._cache:
                self._cache[key] = self.engine.analyze([image], min_face_size=80)[0]
            shown = self.tracker.observe(self._cache[key].faces, image, at=self.now)
            self.now += STEP
        return shown

    def wait(self, seconds: float) -> None:
        for _ in range(round(seconds / STEP)):
            self.tracker.tick(self.tracker.clock())
            self.now += STEP

    def phases(self, phase: str):
        return [e for e in self.events if e.phase == phase]


def test_a_person_walking_in_is_named_on_the_first_whole_view_once(engine, gallery, portraits):
    run = Run(engine, gallery)
    obama = portraits["obama"]
    run.show(frame((obama, -obama.shape[1] // 2 - 40, 150)))  # the face cut by the frame's edge: no attempt
    assert run.events == []
    whole_at = run.now
    shown = run.show(frame((obama, 200, 150)))
    [opened] = run.phases("opened")
    assert opened.person_id == 1 and opened.named_at == whole_at and opened.crop is not None
    assert shown[0].decided and shown[0].person_id == 1
    run.show(frame((obama, 210, 150)), count=15)  # 3 s in view
    run.wait(4.0)  # gone: the track ends after 1 s, the appearance closes 2 s later
    [closed] = run.phases("closed")
    assert closed.uid == opened.uid and closed.closed_at == closed.last_seen
    # The half face, when detected at all, is too far from the whole one to be the same track:
    # its own track, never seen whole, ends without an event.
    assert closed.frames_recognised == 16 and closed.frames_seen == 16
    assert len(run.phases("opened")) == 1 and run.phases("updated")
    assert all(e.uid == opened.uid for e in run.events)
    assert math.isclose(closed.first_seen, whole_at)


def test_a_stranger_is_unknown_after_three_views(engine, gallery, portraits):
    run = Run(engine, gallery)
    run.show(frame((portraits["stranger"], 500, 100)), count=2)
    assert run.events == []
    run.show(frame((portraits["stranger"], 505, 100)))
    [opened] = run.phases("opened")
    assert opened.person_id is None and opened.kind == "unknown" and opened.distance > POLICY.threshold


def test_coming_back_soon_continues_the_appearance_and_later_makes_a_new_one(engine, gallery, portraits):
    run = Run(engine, gallery)
    obama = frame((portraits["obama"], 300, 150))
    run.show(obama, count=5)
    run.wait(1.6)  # the track ends; the appearance waits for it to come back
    run.show(obama, count=3)
    assert len(run.phases("opened")) == 1 and run.phases("closed") == []
    run.wait(3.4)
    assert len(run.phases("closed")) == 1
    run.show(obama, count=2)
    first, second = run.phases("opened")
    assert first.uid != second.uid and second.person_id == first.person_id == 1


def test_two_people_at_once_are_two_appearances(engine, gallery, portraits):
    run = Run(engine, gallery)
    shown = run.show(frame((portraits["obama"], 100, 150), (portraits["biden"], 800, 150)), count=3)
    opened = run.phases("opened")
    assert sorted(e.person_id for e in opened) == [1, 2]
    assert len({face.track_id for face in shown}) == 2


def test_an_adopted_appearance_continues_when_its_face_is_seen_again(engine, gallery, portraits):
    import uuid

    run = Run(engine, gallery)
    uid = uuid.uuid4()
    run.tracker.adopt(uid=uid, person_id=1, embedding=gallery[1][0], box=box(300, 150, 150), first_seen=900.0,
                      named_at=900.2, last_seen=999.0, frames_seen=40, frames_recognised=38, distance=0.4,
                      size=150, sharpness=50.0, linger_until=run.now + 10)
    run.show(frame((portraits["obama"], 300, 150)), count=3)
    assert run.phases("opened") == []
    run.wait(14.0)
    [closed] = run.phases("closed")
    assert closed.uid == uid and closed.first_seen == 900.0 and closed.frames_seen == 43


def test_an_adopted_appearance_nobody_comes_back_to_is_closed_as_last_seen(engine, gallery):
    import uuid

    run = Run(engine, gallery)
    uid = uuid.uuid4()
    run.tracker.adopt(uid=uid, person_id=2, embedding=gallery[2][0], box=box(0, 0), first_seen=900.0, named_at=901.0,
                      last_seen=950.0, frames_seen=3, frames_recognised=3, distance=0.45, size=100, sharpness=10.0,
                      linger_until=run.now + 2)
    run.wait(3.0)
    [closed] = run.phases("closed")
    assert closed.uid == uid and closed.closed_at == 950.0 and closed.crop is None


def test_frames_analysed_late_do_not_end_their_own_tracks(engine, gallery, portraits):
    """Frames analysed 3.5 s after they arrived (a machine far behind): the clock's ticks are taken
    back by that lag, so the face seen in each frame is not ended by the tick that follows it (nor
    its appearance closed: 3.5 s is past the track timeout and the rejoin wait together)."""
    run = Run(engine, gallery, lag=3.5)
    obama = frame((portraits["obama"], 300, 150))
    for _ in range(10):
        run.show(obama)
        run.tracker.tick(run.tracker.clock())
    assert len(run.phases("opened")) == 1 and run.phases("closed") == []
    run.wait(4.0)
    [closed] = run.phases("closed")
    assert closed.frames_seen == 10
