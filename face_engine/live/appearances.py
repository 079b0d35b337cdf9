"""From tracked faces to appearances: one decision, one event, per time a face is in view.

Each analysed frame, every face that is wholly inside the frame is matched against the gallery (a
recognition *attempt*). A track's attempts are combined by a vote (``decide``); when the vote is
decided the appearance is *opened* (the event is written), while the face stays in view it is
*updated* now and then (last seen, the best crop so far), and when its tracks have all ended it
is *closed*. A face that leaves and comes back within ``rejoin`` seconds, or a track that the
tracker lost and restarted, continues the same appearance instead of making a second event.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from face_engine.live.tracker import IouTracker
from face_engine.matching import confidence
from face_engine.types import BoundingBox, Embedding, Face, RGBImage


@dataclass(frozen=True)
class Candidate:
    person_id: int
    distance: float


# Embeddings (n × 128) → for each, the nearest people, nearest first (one entry per person).
MatchFn = Callable[[np.ndarray], list[list[Candidate]]]


@dataclass(frozen=True)
class VotePolicy:
    threshold: float = 0.6  # the match threshold: an attempt farther from everyone votes "unknown"
    confident: float = 0.5  # an attempt this close, with `margin` to the next person, names at once
    margin: float = 0.05
    max_attempts: int = 5  # the vote is decided after this many attempts at the latest
    unknown_after: int = 3  # attempts, nearly all unknown, that decide "unknown"
    edge: int = 2  # a face box closer than this to the frame's edge is cut off: no attempt
    track_timeout: float = 1.0  # seconds unseen before a track ends
    rejoin: float = 2.0  # seconds an ended appearance waits for its face to come back
    update_every: float = 2.0  # seconds between updates of an appearance in view


@dataclass
class Attempt:
    person_id: int | None  # the nearest person within the threshold, else None
    distance: float  # to the nearest person (inf with an empty gallery)
    margin: float  # how much farther the next person is
    weight: float  # larger faces count more


@dataclass(frozen=True)
class AppearanceEvent:
    """A snapshot of an appearance for whoever records it (the event sink)."""

    phase: str  # "opened", "updated" or "closed"
    uid: uuid.UUID
    track_id: int
    person_id: int | None
    distance: float | None
    threshold: float
    first_seen: float  # time.time() of frames
    named_at: float
    last_seen: float
    closed_at: float | None
    frames_seen: int
    frames_recognised: int
    face_box: BoundingBox
    face_size: int
    sharpness: float
    embedding: Embedding = field(repr=False)
    crop: RGBImage | None = field(default=None, repr=False)  # only when it changed since the last snapshot

    @property
    def kind(self) -> str:
        return "known" if self.person_id is not None else "unknown"

    @property
    def confidence(self) -> float | None:
        return None if self.distance is None or math.isinf(self.distance) else confidence(self.distance,
                                                                                          self.threshold)


@dataclass(frozen=True)
class TrackedFace:
    """One face of an analysed frame, for display: its track and what is known of it so far."""

    track_id: int
    box: BoundingBox
    decided: bool
    person_id: int | None
    distance: float | None  # this frame's distance to the nearest person, when it was matched
    appearance: uuid.UUID


@dataclass
class Appearance:
    uid: uuid.UUID
    track_id: int  # its first track's id
    tracks: set[int]
    first_seen: float
    last_seen: float
    frames_seen: int = 0
    recognised: int = 0  # frames it was matched in (its attempts are kept only until the vote is decided)
    attempts: list[Attempt] = field(default_factory=list)
    decided: bool = False
    person_id: int | None = None
    distance: float | None = None
    named_at: float = 0.0
    ended_at: float | None = None
    quality: float = -1.0
    box: BoundingBox | None = None
    size: int = 0
    sharpness: float = 0.0
    embedding: Embedding | None = None
    crop: RGBImage | None = None
    crop_changed: bool = False
    last_emit: float = 0.0
    dirty: bool = False
    linger_until: float | None = None  # adopted: waits this long (time.time()) instead of `rejoin`


def sharpness(chip: RGBImage) -> float:
    """Variance of the Laplacian of the aligned chip's grey levels: low when blurred."""
    grey = chip.astype(np.float32).mean(axis=2)
    lap = 4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
    return float(lap.var())


def crop_around(image: RGBImage, box: BoundingBox, pad: float = 0.25) -> RGBImage:
    height, width = image.shape[:2]
    dx, dy = round(box.width * pad), round(box.height * pad)
    top, bottom = max(0, box.top - dy), min(height, box.bottom + dy)
    left, right = max(0, box.left - dx), min(width, box.right + dx)
    return np.ascontiguousarray(image[top:bottom, left:right])


def decide(attempts: Sequence[Attempt], policy: VotePolicy, *, final: bool = False) -> tuple[bool, int | None]:
    """(decided, person id or None for unknown) from a track's attempts so far.

    One attempt names at once when it is confidently close with a margin over the next person
    (the common case: the name comes with the first whole view of the face). Otherwise votes
    weighted by face size and closeness add up; a person needs two matching attempts and twice
    the weight of the rest, "unknown" needs ``unknown_after`` attempts and twice the weight of the
    rest; at ``max_attempts`` (or when the track ends, ``final``) the leader wins.
    """
    if not attempts:
        return False, None
    last = attempts[-1]
    if last.person_id is not None and last.distance <= policy.confident and last.margin >= policy.margin:
        return True, last.person_id
    scores: dict[int | None, float] = defaultdict(float)
    matches: dict[int, int] = defaultdict(int)
    for attempt in attempts:
        if attempt.person_id is None:
            scores[None] += attempt.weight
        else:
            scores[attempt.person_id] += attempt.weight * (1.5 - attempt.distance / policy.threshold)
            matches[attempt.person_id] += 1
    leader = max(scores, key=lambda key: (scores[key], key is None))  # a tie goes to unknown
    rest = sum(scores.values()) - scores[leader]
    if leader is not None and matches[leader] >= 2 and scores[leader] >= 2 * rest:
        return True, leader
    if leader is None and len(attempts) >= policy.unknown_after and scores[None] >= 2 * rest:
        return True, None
    if final or len(attempts) >= policy.max_attempts:
        return True, leader
    return False, None


class AppearanceTracker:
    """The appearances of one stream. ``observe`` each analysed frame's faces; ``tick`` when no
    frame comes (so that appearances still end); ``close_all`` when the stream stops."""

    def __init__(self, *, match: MatchFn, emit: Callable[[AppearanceEvent], None],
                 policy: VotePolicy | None = None, clock: Callable[[], float] = time.time) -> None:
        self.policy = policy or VotePolicy()
        self.match, self.emit, self.clock = match, emit, clock
        self.tracker = IouTracker(lost_after=self.policy.track_timeout)
        self.by_track: dict[int, Appearance] = {}
        self.lingering: list[Appearance] = []
        # How far behind the clock the frames are (received → analysed): ticks from the clock are
        # moved back by it, so that a slow analysis does not end the tracks of the frame it was
        # analysing (its faces are "last seen" at the frame's time, not the analysis's).
        self.lag = 0.0

    def observe(self, faces: Sequence[Face], image: RGBImage, *, at: float) -> list[TrackedFace]:
        """One analysed frame (``at``: when it was received, time.time())."""
        track_ids = self.tracker.update([face.box for face in faces], at)
        height, width = image.shape[:2]
        whole = [i for i, face in enumerate(faces) if self._whole(face.box, width, height)]
        candidates = dict(zip(whole, self.match(np.stack([faces[i].embedding for i in whole])), strict=True)) \
            if whole else {}
        shown: list[TrackedFace] = []
        for i, (face, track_id) in enumerate(zip(faces, track_ids, strict=True)):
            appearance = self.by_track.get(track_id)
            if appearance is None:
                appearance = Appearance(uid=uuid.uuid4(), track_id=track_id, tracks={track_id}, first_seen=at,
                                        last_seen=at)
                self.by_track[track_id] = appearance
            appearance.last_seen = max(appearance.last_seen, at)
            appearance.frames_seen += 1
            distance = None
            if i in candidates:
                attempt = self._attempt(face, candidates[i])
                distance = attempt.distance if not math.isinf(attempt.distance) else None
                appearance = self._recognised(appearance, face, image, attempt, track_id)
            shown.append(TrackedFace(track_id=track_id, box=face.box, decided=appearance.decided,
                                     person_id=appearance.person_id, distance=distance, appearance=appearance.uid))
        self.lag = max(0.0, self.clock() - at)
        self._expire(at)
        return shown

    def tick(self, now: float) -> None:
        """``now`` by the clock, when no frame comes: end what is due (see ``_expire``)."""
        self._expire(now - self.lag)

    def _expire(self, now: float) -> None:
        """End the tracks unseen for ``track_timeout``, close the appearances that waited
        ``rejoin`` in vain, and send the updates that are due (``now`` on the frames' clock)."""
        for track in self.tracker.expire(now):
            appearance = self.by_track.pop(track.id, None)
            if appearance is not None:
                appearance.tracks.discard(track.id)
                if not appearance.tracks:
                    self._ended(appearance, now)
        for appearance in [a for a in self.lingering if self._gone(a, now)]:
            self.lingering.remove(appearance)
            self._send(appearance, "closed", closed_at=appearance.last_seen)
        for appearance in self._open():
            if appearance.decided and appearance.dirty and now - appearance.last_emit >= self.policy.update_every:
                self._send(appearance, "updated")

    def adopt(self, *, uid: uuid.UUID, person_id: int | None, embedding: Embedding, box: BoundingBox,
              first_seen: float, named_at: float, last_seen: float, frames_seen: int, frames_recognised: int,
              distance: float | None, size: int, sharpness: float, linger_until: float) -> None:
        """An appearance that another process opened and could not close (it died): it waits here
        until ``linger_until``, so that its face, seen again, continues it instead of making a
        second event; then it is closed as last seen."""
        appearance = Appearance(
            uid=uid, track_id=0, tracks=set(), first_seen=first_seen, last_seen=last_seen, frames_seen=frames_seen,
            recognised=frames_recognised, decided=True, person_id=person_id, distance=distance, named_at=named_at,
            ended_at=last_seen, quality=sharpness * min(size, 200) / 200.0, box=box, size=size, sharpness=sharpness,
            embedding=embedding, linger_until=linger_until)
        self.lingering.append(appearance)

    def _gone(self, appearance: Appearance, now: float) -> bool:
        if appearance.linger_until is not None:
            return now >= appearance.linger_until
        return now - appearance.last_seen >= self.policy.rejoin

    def close_all(self) -> None:
        """The stream stops: every appearance ends now (decided ones are closed)."""
        for track in self.tracker.end_all():
            appearance = self.by_track.pop(track.id, None)
            if appearance is not None:
                appearance.tracks.discard(track.id)
                if not appearance.tracks:
                    self._ended(appearance, appearance.last_seen)
        for appearance in self.lingering:
            self._send(appearance, "closed", closed_at=appearance.last_seen)
        self.lingering.clear()

    def _open(self) -> list[Appearance]:
        """The appearances in view, once each (merged appearances have several tracks)."""
        return list({id(a): a for a in self.by_track.values()}.values())

    def _whole(self, box: BoundingBox, width: int, height: int) -> bool:
        edge = self.policy.edge
        return box.left >= edge and box.top >= edge and box.right <= width - edge and box.bottom <= height - edge

    def _attempt(self, face: Face, candidates: list[Candidate]) -> Attempt:
        best = candidates[0] if candidates else None
        distance = best.distance if best else math.inf
        margin = candidates[1].distance - distance if len(candidates) > 1 else math.inf
        person = best.person_id if best and distance <= self.policy.threshold else None
        size = math.sqrt(max(1, face.box.area))
        return Attempt(person_id=person, distance=distance, margin=margin, weight=min(1.0, size / 100.0))

    def _recognised(self, appearance: Appearance, face: Face, image: RGBImage, attempt: Attempt,
                    track_id: int) -> Appearance:
        appearance.recognised += 1
        self._keep_best(appearance, face, image)
        if appearance.decided:
            if attempt.person_id == appearance.person_id and appearance.person_id is not None:
                appearance.distance = min(appearance.distance or math.inf, attempt.distance)
            appearance.dirty = True
            return appearance
        appearance.attempts.append(attempt)
        decided, person = decide(appearance.attempts, self.policy)
        return self._decided(appearance, person, track_id) if decided else appearance

    def _decided(self, appearance: Appearance, person: int | None, track_id: int | None) -> Appearance:
        appearance.decided, appearance.person_id = True, person
        appearance.distance = min((a.distance for a in appearance.attempts if a.person_id == person),
                                  default=None) if person is not None else \
            min((a.distance for a in appearance.attempts), default=None)
        same = self._same_identity(appearance)
        if same is not None:  # the face came back, or its track was lost and restarted: one appearance
            self._merge(into=same, source=appearance)
            return same
        appearance.named_at = self.clock()
        self._send(appearance, "opened")
        return appearance

    def _same_identity(self, appearance: Appearance) -> Appearance | None:
        others = [a for a in self._open() if a is not appearance]
        for other in [*others, *self.lingering]:
            if not other.decided or other.person_id != appearance.person_id:
                continue
            if other.person_id is not None:
                return other
            if other.embedding is not None and appearance.embedding is not None and \
                    float(np.linalg.norm(other.embedding - appearance.embedding)) <= self.policy.threshold:
                return other
        return None

    def _merge(self, *, into: Appearance, source: Appearance) -> None:
        if into in self.lingering:
            self.lingering.remove(into)
            into.ended_at, into.linger_until = None, None
        for track_id in source.tracks:
            self.by_track[track_id] = into
        into.track_id = into.track_id or source.track_id  # adopted appearances have no track of ours yet
        into.tracks |= source.tracks
        into.first_seen = min(into.first_seen, source.first_seen)
        into.last_seen = max(into.last_seen, source.last_seen)
        into.frames_seen += source.frames_seen
        into.recognised += source.recognised
        if source.distance is not None and into.person_id is not None:
            into.distance = min(into.distance or math.inf, source.distance)
        if source.quality > into.quality:
            into.quality, into.box, into.size, into.sharpness = source.quality, source.box, source.size, \
                source.sharpness
            into.embedding, into.crop, into.crop_changed = source.embedding, source.crop, True
        into.dirty = True

    def _ended(self, appearance: Appearance, now: float) -> None:
        if not appearance.decided:
            if not appearance.recognised:
                return  # never seen whole (a face at the edge, a passing false detection): no event
            decided, person = decide(appearance.attempts, self.policy, final=True)
            appearance = self._decided(appearance, person, None)
            if appearance.tracks:
                return  # merged into an appearance still in view
        appearance.ended_at, appearance.linger_until = now, None
        if appearance not in self.lingering:
            self.lingering.append(appearance)

    def _keep_best(self, appearance: Appearance, face: Face, image: RGBImage) -> None:
        """The sharpest and largest view of the appearance: its crop and embedding are kept."""
        sharp = sharpness(face.chip)
        size = int(round(math.sqrt(max(1, face.box.area))))
        quality = sharp * min(size, 200) / 200.0
        if quality > appearance.quality:
            appearance.quality, appearance.box, appearance.size, appearance.sharpness = quality, face.box, size, sharp
            appearance.embedding = face.embedding
            appearance.crop, appearance.crop_changed = crop_around(image, face.box), True

    def _send(self, appearance: Appearance, phase: str, *, closed_at: float | None = None) -> None:
        assert appearance.box is not None and appearance.embedding is not None
        event = AppearanceEvent(
            phase=phase, uid=appearance.uid, track_id=appearance.track_id,
            person_id=appearance.person_id, distance=appearance.distance, threshold=self.policy.threshold,
            first_seen=appearance.first_seen, named_at=appearance.named_at, last_seen=appearance.last_seen,
            closed_at=closed_at, frames_seen=appearance.frames_seen, frames_recognised=appearance.recognised,
            face_box=appearance.box, face_size=appearance.size, sharpness=round(appearance.sharpness, 2),
            embedding=appearance.embedding, crop=appearance.crop if appearance.crop_changed else None,
        )
        appearance.crop_changed, appearance.dirty, appearance.last_emit = False, False, self.clock() - self.lag
        self.emit(event)
