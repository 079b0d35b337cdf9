"""GalleryIndex with negatives ("this face is not X"): checked against a brute-force numpy search on
synthetic vectors, then on real LFW photos through the real pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from face_engine.index import GalleryIndex
from face_engine.types import EMBEDDING_DIM, Match
from tests.engine.test_index import assert_same_matches, brute_force, near, unit_vectors

LFW = Path(__file__).resolve().parents[3] / "shared" / "lfw-dev" / "images"
PERSONS, FACES = 30, 3


def screened(queries, face_ids, person_ids, vectors, neg_people, neg_vectors, k) -> list[list[Match]]:
    """The reference: every person ranked by their nearest face, those the query is closer to a
    negative of dropped, then the first k."""
    everyone = brute_force(queries, face_ids, person_ids, vectors, len(set(person_ids.tolist())))
    out = []
    for query, matches in zip(queries, everyone, strict=True):
        kept = []
        for m in matches:
            own = neg_vectors[neg_people == m.person_id]
            if len(own) and np.min(np.linalg.norm(own - query, axis=1)) < m.distance:
                continue
            kept.append(m)
        out.append(kept[:k])
    return out


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(3)
    centres = unit_vectors(rng, PERSONS)
    vectors = np.concatenate([near(rng, c, FACES, 0.05) for c in centres])
    person_ids = np.repeat(np.arange(100, 100 + PERSONS, dtype=np.int64), FACES)
    face_ids = np.arange(len(vectors), dtype=np.int64) + 5000
    # Queries near people 0..9; negatives of people 0..9 close to some of those queries.
    queries = np.concatenate([near(rng, centres[p], 4, 0.08) for p in range(10)])
    neg_people = np.repeat(np.arange(100, 110, dtype=np.int64), 2)
    neg_vectors = np.concatenate([near(rng, centres[p], 2, 0.06) for p in range(10)])
    return face_ids, person_ids, vectors, queries, neg_people, neg_vectors


@pytest.mark.parametrize("exact_max", [100_000, 0], ids=["flat", "ivf"])
@pytest.mark.parametrize("k", [1, 3, 10])
def test_search_drops_people_the_query_is_closer_to_a_negative_of(world, k, exact_max):
    face_ids, person_ids, vectors, queries, neg_people, neg_vectors = world
    index = GalleryIndex(face_ids, person_ids, vectors, exact_max=exact_max, nprobe=1_000,
                         negative_person_ids=neg_people, negative_embeddings=neg_vectors)
    assert index.negative_count == len(neg_vectors)
    want = screened(queries, face_ids, person_ids, vectors, neg_people, neg_vectors, k)
    assert_same_matches(index.search(queries, k), want)
    plain = brute_force(queries, face_ids, person_ids, vectors, k)
    assert_same_matches(index.search(queries, k, negatives=False), plain)
    dropped = sum(w[0].person_id != p[0].person_id for w, p in zip(want, plain, strict=True))
    assert 0 < dropped < len(queries), "the fixture must both drop and keep some top matches"


def test_k_people_still_come_back_when_the_nearest_are_dropped():
    """Every near person is negated for the query: the fetch widens until k others are found."""
    rng = np.random.default_rng(5)
    query = unit_vectors(rng, 1)
    vectors = np.concatenate([near(rng, query[0], 40, 0.01), unit_vectors(rng, 40)])
    person_ids = np.arange(len(vectors), dtype=np.int64)
    negatives = np.repeat(query, 40, axis=0)  # the query itself: closer than any face
    index = GalleryIndex(np.arange(len(vectors)), person_ids, vectors,
                         negative_person_ids=person_ids[:40], negative_embeddings=negatives)
    found = index.search(query, 5)[0]
    assert len(found) == 5 and all(m.person_id >= 40 for m in found)
    want = screened(query, np.arange(len(vectors)), person_ids, vectors, person_ids[:40], negatives, 5)[0]
    assert [m.person_id for m in found] == [m.person_id for m in want]


def test_negatives_apply_within_a_gallery_and_without_faces_of_their_own(world):
    face_ids, person_ids, vectors, queries, neg_people, neg_vectors = world
    galleries = {int(p): [1] for p in person_ids[::2]}
    # A negative of someone with no face at all changes nothing.
    extra_people = np.append(neg_people, 999)
    extra_vectors = np.concatenate([neg_vectors, queries[:1]])
    index = GalleryIndex(face_ids, person_ids, vectors, galleries,
                         negative_person_ids=extra_people, negative_embeddings=extra_vectors)
    rows = np.isin(person_ids, list(galleries))
    want = screened(queries, face_ids[rows], person_ids[rows], vectors[rows], neg_people, neg_vectors, 3)
    assert_same_matches(index.search(queries, 3, gallery_id=1), want)


def test_negative_arrays_must_agree():
    with pytest.raises(ValueError, match="same length"):
        GalleryIndex([1], [1], np.zeros((1, EMBEDDING_DIM), np.float32), negative_person_ids=[1, 2],
                     negative_embeddings=np.zeros((1, EMBEDDING_DIM), np.float32))
    empty = GalleryIndex([1], [1], np.ones((1, EMBEDDING_DIM), np.float32))
    assert empty.negative_count == 0


@pytest.mark.skipif(not LFW.is_dir(), reason="../shared/lfw-dev is not here")
def test_one_negative_on_real_photos(engine):
    """Brendan Hansen's photo is within the default threshold of Aaron Peirsol's enrolled face;
    with one negative (Brendan's first photo) his second photo is no longer matched to Aaron, and
    Aaron's own other photos still are."""
    from PIL import Image

    def faces(*names: str):
        images = [np.asarray(Image.open(LFW / name).convert("RGB")) for name in names]
        return [result.largest for result in engine.analyze(images)]

    aaron, *aaron_others = faces(*(f"Aaron_Peirsol_000{i}.jpg" for i in (1, 2, 3, 4)))
    stranger, stranger_held_out = faces("Brendan_Hansen_0001.jpg", "Brendan_Hansen_0002.jpg")
    threshold = engine.settings.match_threshold
    enrolled = engine.enrol_embedding(aaron)[None, :]
    queries = np.stack([stranger.embedding, stranger_held_out.embedding, *[f.embedding for f in aaron_others]])
    before = GalleryIndex([1], [7], enrolled).search(queries, 1)
    assert all(m[0].person_id == 7 and m[0].distance <= threshold for m in before), "all named Aaron at first"
    index = GalleryIndex([1], [7], enrolled, negative_person_ids=[7], negative_embeddings=stranger.embedding[None])
    after = index.search(queries, 1)
    assert after[0] == [] and after[1] == [], "the stranger, the corrected photo and another, is not Aaron"
    assert [m[0].person_id for m in after[2:]] == [7, 7, 7], "Aaron still is"
