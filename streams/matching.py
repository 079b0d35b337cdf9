"""The gallery as a live stream sees it: this process's index, searched per frame, and names."""

from __future__ import annotations

import logging
import time

import numpy as np
from django.conf import settings
from django.db import DatabaseError

from core.index.holder import index_cache
from face_engine.index import GalleryIndex
from face_engine.live.appearances import Candidate, MatchFn, VotePolicy
from people.models import Person

logger = logging.getLogger(__name__)
CANDIDATES = 3  # the nearest people per face: the vote needs the runner-up's distance


class _DatabaseState:
    """Whether the last index check reached the database. While it does not, frames are matched
    against the index in memory without asking again: each attempt would hold the frame for the
    pool's whole timeout (DB_POOL_TIMEOUT). The camera worker's heartbeat checks on every beat
    (``index_refresh``); other processes retry from a frame every ``RETRY_SECONDS``."""

    RETRY_SECONDS = 10.0

    def __init__(self) -> None:
        self.down_since: float | None = None

    def should_check(self) -> bool:
        return self.down_since is None or time.monotonic() - self.down_since >= self.RETRY_SECONDS

    def failed(self, exc: DatabaseError) -> None:
        if self.down_since is None:
            logger.warning("index check failed (%s); matching against the index in memory", exc.__class__.__name__)
        self.down_since = time.monotonic()

    def ok(self) -> None:
        if self.down_since is not None:
            logger.info("index check reaches the database again")
        self.down_since = None


database = _DatabaseState()


def index_refresh() -> None:
    """Bring this process's index up to date (the camera worker's heartbeat calls it); raises
    DatabaseError while the database is unreachable."""
    try:
        index_cache.get()
    except DatabaseError as exc:
        database.failed(exc)
        raise
    database.ok()


def _current_index() -> GalleryIndex | None:
    """The up-to-date index; while the database is down, the last one this process had, so
    that streams keep recognising through an outage (their events wait in the writer)."""
    if not database.should_check():
        return index_cache.current()
    try:
        index = index_cache.get()
    except DatabaseError as exc:
        database.failed(exc)
        return index_cache.current()
    database.ok()
    return index


def live_policy() -> VotePolicy:
    """The appearance vote of cameras and browser streams, at the service's match threshold."""
    return VotePolicy(threshold=settings.FACE_ENGINE.match_threshold)


def gallery_matcher(gallery_id: int | None) -> MatchFn:
    """A MatchFn over this process's index, limited to one gallery (None: everyone)."""

    def match(embeddings: np.ndarray) -> list[list[Candidate]]:
        index = _current_index()
        if index is None or len(index) == 0:
            return [[] for _ in range(len(embeddings))]
        found = index.search(np.asarray(embeddings, dtype=np.float32), CANDIDATES, gallery_id=gallery_id)
        return [[Candidate(person_id=m.person_id, distance=m.distance) for m in matches] for matches in found]

    return match


def person_names(person_ids: set[int]) -> dict[int, str]:
    if not person_ids:
        return {}
    try:
        return dict(Person.objects.filter(pk__in=person_ids).values_list("id", "name"))
    except DatabaseError:
        return {}
