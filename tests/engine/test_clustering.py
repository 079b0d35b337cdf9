"""Incremental clustering of unknown faces (face_engine.clustering) and the benchmark's scoring
(face_engine.bench.clustering): pure numpy, no Django, no weights."""

from __future__ import annotations

import numpy as np
import pytest

from face_engine.bench.clustering import identity_of, noise_as_singletons, score
from face_engine.clustering import (
    IncrementalClusterer,
    candidate_clusters,
    centroid_add,
    centroid_of,
    cluster_incrementally,
    mean_distance,
    nearest_cluster,
    pick_cluster,
)


def people(count: int, faces: int, *, spread: float, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """``count`` identities far apart (unit centres), ``faces`` each within ``spread`` of their centre."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((count, 128))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x, truth = [], []
    for i, centre in enumerate(centres):
        for _ in range(faces):
            noise = rng.standard_normal(128)
            x.append(centre + spread * noise / np.linalg.norm(noise))
            truth.append(i)
    return np.asarray(x, dtype=np.float32), truth


@pytest.mark.parametrize("linkage", ["average", "centroid", "member"])
def test_faces_of_one_person_cluster_together_and_people_apart(linkage):
    x, truth = people(6, 8, spread=0.15)
    order = np.random.default_rng(3).permutation(len(x))
    labels = cluster_incrementally(x[order], join_distance=0.46, linkage=linkage)
    by_person: dict[int, set[int]] = {}
    for position, face in enumerate(order):
        by_person.setdefault(truth[face], set()).add(labels[position])
    assert all(len(clusters) == 1 for clusters in by_person.values())
    assert len({next(iter(c)) for c in by_person.values()}) == 6  # no two people share a cluster


def test_a_face_beyond_the_join_distance_starts_a_cluster():
    clusterer = IncrementalClusterer(join_distance=0.5)
    a = np.zeros(128, dtype=np.float32)
    b = a.copy()
    b[0] = 0.49
    c = a.copy()
    c[0] = 1.2
    assert [clusterer.add(v) for v in (a, b, c)] == [0, 0, 1]
    assert clusterer.cluster_count == 2
    assert clusterer.centroid(0)[0] == pytest.approx(0.245)


def test_average_linkage_does_not_swallow_a_stranger_the_centroid_would():
    """A cluster spread along a line: its centroid sits in the middle, close to a stranger who is
    far from its members on average. The centroid rule takes the stranger; the live rule does not."""
    axis_x, axis_y = np.eye(128, dtype=np.float32)[0], np.eye(128, dtype=np.float32)[1]
    members = [axis_x * s for s in (0.0, 0.3, -0.3, 0.3, -0.3)]
    stranger = axis_y * 0.4
    assert np.linalg.norm(stranger - np.mean(members, axis=0)) == pytest.approx(0.4)
    assert mean_distance(stranger, members) == pytest.approx(0.48)
    for linkage, joins in (("centroid", True), ("average", False)):
        clusterer = IncrementalClusterer(join_distance=0.46, linkage=linkage)
        assert [clusterer.add(m) for m in members] == [0] * 5
        assert (clusterer.add(stranger) == 0) is joins


def test_candidates_are_the_centroids_within_the_join_distance_nearest_first():
    centroids = np.zeros((4, 128), dtype=np.float32)
    centroids[:, 0] = [0.9, 0.2, 0.4, 0.1]
    assert candidate_clusters(np.zeros(128), centroids, join_distance=0.45) == [3, 1, 2]
    assert candidate_clusters(np.zeros(128), centroids, join_distance=0.45, limit=1) == [3]
    assert candidate_clusters(np.zeros(128), np.empty((0, 128)), join_distance=0.45) == []


def test_pick_cluster_takes_the_smallest_mean_distance_within_the_join_distance():
    face = np.zeros(128, dtype=np.float32)
    near, far = np.eye(128, dtype=np.float32)[0] * 0.3, np.eye(128, dtype=np.float32)[0] * 0.9
    chosen = pick_cluster(face, [np.stack([far, near]), np.stack([near, near])], join_distance=0.46)
    assert chosen.index == 1 and chosen.distance == pytest.approx(0.3)
    refused = pick_cluster(face, [np.stack([far])], join_distance=0.46)
    assert refused.index is None and refused.distance == pytest.approx(0.9)
    assert pick_cluster(face, [], join_distance=0.46).index is None


def test_nearest_cluster_and_centroids():
    assert nearest_cluster(np.zeros(3), np.empty((0, 3)), join_distance=0.5).index is None
    assert nearest_cluster(np.zeros(3), [[0.1, 0, 0], [0.0, 0.05, 0]], join_distance=0.5).index == 1
    assert np.allclose(centroid_add(None, 0, [1, 2, 3]), [1, 2, 3])
    assert np.allclose(centroid_add([1, 1, 1], 3, [5, 5, 5]), [2, 2, 2])
    assert np.allclose(centroid_of([[0, 0], [2, 4]]), [1, 2])
    assert centroid_of([]) is None


@pytest.mark.parametrize("bad", [[], [np.nan, 0.0], [np.inf]])
def test_bad_embeddings_are_refused(bad):
    with pytest.raises(ValueError):
        IncrementalClusterer().add(bad)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError):
        IncrementalClusterer(join_distance=0)
    with pytest.raises(ValueError):
        IncrementalClusterer(linkage="complete")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        candidate_clusters(np.zeros(2), np.zeros((1, 2)), join_distance=-1)


def test_scores():
    truth = ["a", "a", "a", "b", "b", "c"]
    perfect = score(truth, [0, 0, 0, 1, 1, 2])
    assert (perfect.purity, perfect.split_identities, perfect.clusters, perfect.mixed_clusters) == (1.0, 0, 3, 0)
    assert perfect.multi_identities == 2 and perfect.mean_clusters_per_identity == 1.0
    mixed = score(truth, [0, 0, 1, 1, 1, 1])  # a split in two, b and c merged with one of a's
    assert mixed.purity == pytest.approx(4 / 6)
    assert mixed.split_identities == 1 and mixed.mean_clusters_per_identity == 1.5
    assert mixed.mixed_clusters == 1
    with pytest.raises(ValueError):
        score(truth, [0])


def test_identity_and_noise_helpers():
    assert identity_of("George_W_Bush_0012.jpg") == "George_W_Bush"
    assert identity_of("odd.jpg") == "odd"
    assert noise_as_singletons([0, -1, 1, -1]) == [0, 2, 1, 3]
