"""The gallery as a live stream sees it: this process's index, searched per frame, and names."""

from __future__ import annotations

import logging

import numpy as np
from django.conf import settings
from django.db import DatabaseError

from face_engine.index import GalleryIndex
from face_engine.live.appearances import Candidate, MatchFn, VotePolicy
from people.models import Person
from recognition.index_cache import index_cache

logger = logging.getLogger(__name__)
CANDIDATES = 3  # the nearest people per face: the vote needs the runner-up's distance


def _current_index() -> GalleryIndex | None:
    """The up-to-date index; while the database is down, the last one this process had, so
    that streams keep recognising through an outage (their events wait in the writer)."""
    try:
        return index_cache.get()
    except DatabaseError as exc:
        logger.warning("index check failed (%s); matching against the index in memory", exc.__class__.__name__)
        return index_cache.current()


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
