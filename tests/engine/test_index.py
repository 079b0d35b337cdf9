"""GalleryIndex on synthetic unit vectors, checked against a brute-force numpy search."""

from __future__ import annotations

import numpy as np
import pytest

from face_engine.index import GalleryIndex
from face_engine.types import EMBEDDING_DIM, Match

FACES_PER_PERSON = 4
PERSONS = 50


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.normal(size=(n, EMBEDDING_DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def near(rng: np.random.Generator, centre: np.ndarray, n: int, spread: float) -> np.ndarray:
    """n unit vectors around ``centre``, at distances growing with ``spread``."""
    noise = unit_vectors(rng, n) * (spread * np.arange(1, n + 1))[:, None]
    vectors = centre + noise
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def brute_force(
    queries: np.ndarray, face_ids: np.ndarray, person_ids: np.ndarray, vectors: np.ndarray, k: int
) -> list[list[Match]]:
    """Per query: the nearest face of each person, the k nearest people, by numpy."""
    out = []
    for query in queries:
        distances = np.linalg.norm(vectors - query, axis=1)
        best: dict[int, Match] = {}
        for row in np.argsort(distances, kind="stable"):
            person = int(person_ids[row])
            if person not in best:
                best[person] = Match(int(face_ids[row]), person, float(distances[row]))
        out.append(list(best.values())[:k])
    return out


def assert_same_matches(found: list[list[Match]], expected: list[list[Match]]) -> None:
    assert len(found) == len(expected)
    for got, want in zip(found, expected, strict=True):
        assert [(m.face_id, m.person_id) for m in got] == [(m.face_id, m.person_id) for m in want]
        np.testing.assert_allclose([m.distance for m in got], [m.distance for m in want], rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def gallery():
    """50 people × 4 faces; face ids do not start at 0; even people in gallery 1, odd in 2,
    people 0–9 in both (the even ones list gallery 1 twice: it must count once); gallery 3 holds
    only a person who has no face."""
    rng = np.random.default_rng(42)
    vectors = unit_vectors(rng, PERSONS * FACES_PER_PERSON)
    face_ids = np.arange(1000, 1000 + len(vectors), dtype=np.int64)
    person_ids = np.repeat(np.arange(PERSONS, dtype=np.int64), FACES_PER_PERSON)
    galleries = {p: [1 if p % 2 == 0 else 2] + ([1, 2] if p < 10 else []) for p in range(PERSONS)}
    galleries[999] = [3]
    index = GalleryIndex(face_ids, person_ids, vectors, galleries)
    return index, face_ids, person_ids, vectors


@pytest.fixture(scope="module")
def queries():
    return unit_vectors(np.random.default_rng(7), 25)  # ≥ 20 queries: faiss's batched BLAS path


def test_size(gallery):
    index, *_ = gallery
    assert len(index) == PERSONS * FACES_PER_PERSON
    assert index.person_count == PERSONS


@pytest.mark.parametrize("k", [1, 5, 12])
def test_matches_brute_force(gallery, queries, k):
    index, face_ids, person_ids, vectors = gallery
    found = index.search(queries, k)
    assert all(len(matches) == k for matches in found)
    assert_same_matches(found, brute_force(queries, face_ids, person_ids, vectors, k))


def test_single_query_vector(gallery, queries):
    index, face_ids, person_ids, vectors = gallery
    assert_same_matches(index.search(queries[0], 3), brute_force(queries[:1], face_ids, person_ids, vectors, 3))


def test_distances_are_euclidean_not_squared(gallery):
    index, face_ids, _, vectors = gallery
    query = unit_vectors(np.random.default_rng(3), 1)
    [matches] = index.search(query, 5)
    by_face = dict(zip(face_ids.tolist(), np.linalg.norm(vectors - query, axis=1).tolist(), strict=True))
    for match in matches:
        assert match.distance == pytest.approx(by_face[match.face_id], abs=1e-5)
    assert all(1.0 < m.distance < 2.0 for m in matches)  # random unit vectors: √2 apart, not 2


def test_a_stored_vector_finds_itself_at_distance_zero(gallery):
    index, face_ids, person_ids, vectors = gallery
    [[first, *_]] = index.search(vectors[17:18], 3)
    assert (first.face_id, first.person_id) == (face_ids[17], person_ids[17])
    assert first.distance == pytest.approx(0.0, abs=1e-3)


def test_a_person_with_several_near_faces_appears_once_with_the_best():
    rng = np.random.default_rng(1)
    query = unit_vectors(rng, 1)[0]
    close = near(rng, query, 5, spread=0.05)  # person 7's five faces, nearest first
    others = unit_vectors(rng, 40)
    vectors = np.vstack([others[:20], close, others[20:]])
    person_ids = np.r_[np.arange(100, 120), np.full(5, 7), np.arange(120, 140)]
    face_ids = np.arange(len(vectors)) + 500
    index = GalleryIndex(face_ids, person_ids, vectors)

    [matches] = index.search(query, 3)
    assert [m.person_id for m in matches].count(7) == 1
    assert matches[0].person_id == 7 and matches[0].face_id == 520  # the first (nearest) of the five
    assert len({m.person_id for m in matches}) == 3


def test_search_widens_when_one_person_owns_the_nearest_faces():
    """Person 0 holds the 300 nearest faces: far more than the first fetch (4k + 8)."""
    rng = np.random.default_rng(2)
    query = unit_vectors(rng, 1)[0]
    vectors = np.vstack([near(rng, query, 300, spread=0.001), unit_vectors(rng, 60)])
    person_ids = np.r_[np.zeros(300, dtype=np.int64), np.arange(1, 61)]
    face_ids = np.arange(len(vectors))
    index = GalleryIndex(face_ids, person_ids, vectors)

    for k in (3, 10):
        [matches] = index.search(query[None], k)
        assert len(matches) == k
        assert_same_matches([matches], brute_force(query[None], face_ids, person_ids, vectors, k))


def test_k_larger_than_the_gallery_returns_everyone(gallery, queries):
    index, *_ = gallery
    found = index.search(queries[:3], PERSONS + 10)
    assert all(sorted(m.person_id for m in matches) == list(range(PERSONS)) for matches in found)


def test_k_zero_returns_nothing(gallery, queries):
    index, *_ = gallery
    assert index.search(queries[:2], 0) == [[], []]


@pytest.mark.parametrize("gallery_id", [1, 2])
def test_gallery_filter(gallery, queries, gallery_id):
    index, face_ids, person_ids, vectors = gallery
    members = [p for p in range(PERSONS) if p < 10 or p % 2 == gallery_id - 1]
    keep = np.isin(person_ids, members)
    found = index.search(queries, 5, gallery_id=gallery_id)
    assert {m.person_id for matches in found for m in matches} <= set(members)
    assert_same_matches(found, brute_force(queries, face_ids[keep], person_ids[keep], vectors[keep], 5))
    assert index.gallery_size(gallery_id) == len(members) * FACES_PER_PERSON


@pytest.mark.parametrize("gallery_id", [3, 404])
def test_gallery_without_faces_or_unknown(gallery, queries, gallery_id):
    index, *_ = gallery
    assert index.search(queries[:4], 5, gallery_id=gallery_id) == [[], [], [], []]
    assert index.gallery_size(gallery_id) == 0


def test_no_gallery_memberships_means_every_gallery_is_empty():
    rng = np.random.default_rng(5)
    index = GalleryIndex([1, 2], [10, 20], unit_vectors(rng, 2))
    assert index.search(unit_vectors(rng, 1), 1, gallery_id=1) == [[]]
    assert len(index.search(unit_vectors(rng, 1), 1)[0]) == 1


@pytest.mark.parametrize("index", [GalleryIndex.empty(), GalleryIndex([], [], np.zeros((0, EMBEDDING_DIM)))])
def test_empty_index(index):
    assert len(index) == 0 and index.person_count == 0
    queries = unit_vectors(np.random.default_rng(0), 2)
    assert index.search(queries, 5) == [[], []]
    assert index.search(queries, 5, gallery_id=1) == [[], []]


def test_no_queries(gallery):
    index, *_ = gallery
    assert index.search(np.zeros((0, EMBEDDING_DIM), dtype=np.float32), 5) == []


@pytest.mark.parametrize(
    ("face_ids", "person_ids", "rows"),
    [([1, 2], [1, 1, 2], 3), ([1, 2, 3], [1, 2], 3), ([1, 2, 3], [1, 2, 3], 2)],
    ids=["short-face-ids", "short-person-ids", "short-embeddings"],
)
def test_mismatched_lengths(face_ids, person_ids, rows):
    with pytest.raises(ValueError, match="same length"):
        GalleryIndex(face_ids, person_ids, unit_vectors(np.random.default_rng(0), rows))


def clustered(rng: np.random.Generator, people: int, faces: int, spread: float = 0.03):
    """Synthetic gallery shaped like face embeddings: a few faces ~0.35 apart around each person."""
    centres = unit_vectors(rng, people)
    vectors = np.repeat(centres, faces, axis=0) + rng.normal(
        scale=spread, size=(people * faces, EMBEDDING_DIM)).astype(np.float32)
    person_ids = np.repeat(np.arange(people, dtype=np.int64), faces)
    return centres, vectors.astype(np.float32), person_ids


def test_above_exact_max_an_ivf_index_keeps_recall():
    rng = np.random.default_rng(7)
    centres, vectors, person_ids = clustered(rng, people=4000, faces=5)
    face_ids = np.arange(10_000, 10_000 + len(vectors), dtype=np.int64)
    ann = GalleryIndex(face_ids, person_ids, vectors, exact_max=1000)
    exact = GalleryIndex(face_ids, person_ids, vectors)
    assert not ann.exact and exact.exact and len(ann) == len(exact) == 20_000
    queries = (centres[:300] + rng.normal(scale=0.03, size=(300, EMBEDDING_DIM))).astype(np.float32)
    got = ann.search(queries, 1)
    want = exact.search(queries, 1)
    recall = np.mean([g[0].face_id == w[0].face_id for g, w in zip(got, want, strict=True)])
    assert recall >= 0.97
    assert all(g[0].distance == pytest.approx(w[0].distance, abs=1e-4)
               for g, w in zip(got, want, strict=True) if g[0].face_id == w[0].face_id)


def test_ivf_index_filters_by_gallery():
    rng = np.random.default_rng(8)
    centres, vectors, person_ids = clustered(rng, people=600, faces=4)
    members = {p: [1] for p in range(0, 600, 3)}
    index = GalleryIndex(np.arange(len(vectors)), person_ids, vectors, members, exact_max=500)
    assert not index.exact and index.gallery_size(1) == 200 * 4
    results = index.search(centres[:30], 3, gallery_id=1)
    assert all(m.person_id % 3 == 0 for matches in results for m in matches)
    assert all(len(matches) == 3 for matches in results)


def test_device_matrix_search_equals_faiss():
    """The accelerator path (one matrix product a batch) gives FAISS's exact answers; run on the CPU."""
    from face_engine.sessions.torch_session import TorchExactSearch

    rng = np.random.default_rng(11)
    centres, vectors, person_ids = clustered(rng, people=300, faces=4)
    members = {p: [5] for p in range(0, 300, 2)}
    face_ids = np.arange(100, 100 + len(vectors))
    on_device = GalleryIndex(face_ids, person_ids, vectors, members,
                             device_search=lambda v: TorchExactSearch(v, "cpu", chunk=7))
    plain = GalleryIndex(face_ids, person_ids, vectors, members)
    assert on_device.exact and len(on_device) == len(plain) == 1200
    queries = (centres[:20] + rng.normal(scale=0.03, size=(20, EMBEDDING_DIM))).astype(np.float32)
    for gallery in (None, 5):
        got = on_device.search(queries, 4, gallery_id=gallery)
        want = plain.search(queries, 4, gallery_id=gallery)
        assert [[m.face_id for m in r] for r in got] == [[m.face_id for m in r] for r in want]
        assert all(g.distance == pytest.approx(w.distance, abs=1e-4)
                   for gr, wr in zip(got, want, strict=True) for g, w in zip(gr, wr, strict=True))


def test_a_rebuild_reuses_the_trained_cells_while_the_size_suits_them():
    rng = np.random.default_rng(9)
    centres, vectors, person_ids = clustered(rng, people=1000, faces=4)
    face_ids = np.arange(len(vectors))
    first = GalleryIndex(face_ids, person_ids, vectors, exact_max=1000)
    assert first.trained is not None and first.trained.ntotal == 0 and first.trained.is_trained
    grown = GalleryIndex(face_ids[:3500], person_ids[:3500], vectors[:3500], exact_max=1000, trained=first.trained)
    def centroids(index):
        return index.quantizer.reconstruct_n(0, index.nlist)

    assert np.array_equal(centroids(grown.trained), centroids(first.trained))  # not trained again
    got = grown.search(centres[:50], 1)
    assert [m[0].person_id for m in got] == list(range(50))
    # Ten times the faces wants other cells: trained afresh.
    big_c, big_v, big_p = clustered(rng, people=10_000, faces=4)
    big = GalleryIndex(np.arange(len(big_v)), big_p, big_v, exact_max=1000, trained=first.trained)
    assert big.trained.nlist != first.trained.nlist
