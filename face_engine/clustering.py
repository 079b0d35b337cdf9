"""Incremental clustering of unknown faces: a face joins the nearest cluster when it is within
``join_distance`` of it, else it starts a cluster of its own.

Pure (numpy only): the service (unknowns.services) keeps the clusters in the database and asks
``candidate_clusters`` and ``pick_cluster`` where a new face goes; ``IncrementalClusterer`` is the
same rule over clusters held in memory (the benchmark, face_engine.bench.clustering, and tests).

The distance of a face to a cluster is its mean distance to the cluster's members (average
linkage). Chosen by measurement on LFW (docs/performance.md, "Unknown identities"): at the same
number of identities split it keeps clusters purer than the distance to the centroid (which
drifts towards the middle of the face space as a cluster grows, and then swallows strangers) and
than the nearest member (single linkage, which chains strangers through look-alikes), and than
dlib's Chinese whispers and DBSCAN, which are batch methods besides. The mean distance to the
members is never less than the distance to their centroid (the norm is convex), so the clusters
whose centroid is within ``join_distance`` are exactly the candidates: one vector per cluster is
searched, and only the candidates' members are read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]
Linkage = Literal["average", "centroid", "member"]

# Chosen on LFW (docs/performance.md): purity 0.98 with a third of the identities split. Well under
# the recognition threshold (0.6): a wrong join mixes two strangers until someone splits them (and
# naming the cluster would enrol a stranger), while a split is undone by one merge.
DEFAULT_JOIN_DISTANCE = 0.46
# The nearest centroids whose members are read: bounds the work of one face in a crowded space.
MAX_CANDIDATES = 8


@dataclass(frozen=True)
class Assignment:
    """Where a face goes: ``index`` of the nearest cluster (None: it starts a new one) and its
    ``distance`` to that cluster (None when there was no cluster at all)."""

    index: int | None
    distance: float | None


def as_vector(embedding: npt.ArrayLike) -> Vector:
    vector = np.asarray(embedding, dtype=np.float32).reshape(-1)
    if vector.size == 0 or not np.all(np.isfinite(vector)):
        raise ValueError("an embedding must be a non-empty vector of finite numbers")
    return vector


def nearest_cluster(embedding: npt.ArrayLike, centroids: npt.ArrayLike, *, join_distance: float) -> Assignment:
    """The cluster (a row of ``centroids``, n×d) that ``embedding`` joins, or a new one."""
    if not join_distance > 0:
        raise ValueError("join_distance must be more than 0")
    vector = as_vector(embedding)
    matrix = np.asarray(centroids, dtype=np.float32)
    if matrix.size == 0:
        return Assignment(index=None, distance=None)
    matrix = matrix.reshape(-1, vector.size)
    distances = np.linalg.norm(matrix - vector, axis=1)
    best = int(np.argmin(distances))
    nearest = float(distances[best])
    return Assignment(index=best if nearest <= join_distance else None, distance=nearest)


def candidate_clusters(embedding: npt.ArrayLike, centroids: npt.ArrayLike, *, join_distance: float,
                       limit: int = MAX_CANDIDATES) -> list[int]:
    """Rows of ``centroids`` within ``join_distance`` of ``embedding``, nearest first, at most
    ``limit``: the only clusters whose mean member distance can be within it."""
    if not join_distance > 0:
        raise ValueError("join_distance must be more than 0")
    vector = as_vector(embedding)
    matrix = np.asarray(centroids, dtype=np.float32)
    if matrix.size == 0:
        return []
    distances = np.linalg.norm(matrix.reshape(-1, vector.size) - vector, axis=1)
    near = np.flatnonzero(distances <= join_distance)
    return [int(i) for i in near[np.argsort(distances[near], kind="stable")][:limit]]


def mean_distance(embedding: npt.ArrayLike, members: npt.ArrayLike) -> float:
    vector = as_vector(embedding)
    matrix = np.asarray(members, dtype=np.float32).reshape(-1, vector.size)
    if len(matrix) == 0:
        return float("inf")
    return float(np.mean(np.linalg.norm(matrix - vector, axis=1)))


def pick_cluster(embedding: npt.ArrayLike, members: Sequence[npt.ArrayLike], *, join_distance: float) -> Assignment:
    """Of the candidates (each given by its members' embeddings), the one with the smallest mean
    distance, if that is within ``join_distance``; else a new cluster."""
    if not join_distance > 0:
        raise ValueError("join_distance must be more than 0")
    if not members:
        return Assignment(index=None, distance=None)
    distances = [mean_distance(embedding, m) for m in members]
    best = int(np.argmin(distances))
    return Assignment(index=best if distances[best] <= join_distance else None, distance=distances[best])


def centroid_add(centroid: npt.ArrayLike | None, count: int, embedding: npt.ArrayLike) -> Vector:
    """The mean of ``count`` members (``centroid``) and one more, ``embedding``."""
    vector = as_vector(embedding)
    if centroid is None or count <= 0:
        return vector.copy()
    mean = np.asarray(centroid, dtype=np.float32).reshape(-1)
    return ((mean * count + vector) / (count + 1)).astype(np.float32)


def centroid_of(embeddings: Sequence[npt.ArrayLike] | npt.NDArray[np.float32]) -> Vector | None:
    """The mean of ``embeddings`` (None for none): recomputed after a merge or a split."""
    if len(embeddings) == 0:
        return None
    mean: Vector = np.mean(np.stack([as_vector(e) for e in embeddings]), axis=0).astype(np.float32)
    return mean


@dataclass
class _Cluster:
    total: Vector
    count: int
    members: list[Vector] = field(default_factory=list)

    @property
    def centroid(self) -> Vector:
        return (self.total / self.count).astype(np.float32)

    def members_matrix(self) -> npt.NDArray[np.float32]:
        return np.stack(self.members)


class IncrementalClusterer:
    """Faces arrive one at a time; each gets a cluster label (0, 1, 2... in order of creation).

    ``linkage`` "average" (the service's rule) measures the mean distance to each cluster's
    members; "centroid" the distance to their mean; "member" to the nearest member (single
    linkage): the last two are kept for the benchmark's comparison."""

    def __init__(self, *, join_distance: float = DEFAULT_JOIN_DISTANCE, linkage: Linkage = "average") -> None:
        if not join_distance > 0:
            raise ValueError("join_distance must be more than 0")
        if linkage not in ("average", "centroid", "member"):
            raise ValueError("linkage must be 'average', 'centroid' or 'member'")
        self.join_distance = join_distance
        self.linkage = linkage
        self._clusters: list[_Cluster] = []
        self._centroids = _Rows()
        self._members = _Rows()  # every face so far, for "member"
        self._member_label: list[int] = []
        self.labels: list[int] = []

    @property
    def cluster_count(self) -> int:
        return len(self._clusters)

    def centroid(self, label: int) -> Vector:
        return self._clusters[label].centroid

    def add(self, embedding: npt.ArrayLike) -> int:
        vector = as_vector(embedding)
        if self.linkage == "average":
            near = candidate_clusters(vector, self._centroids.view(), join_distance=self.join_distance)
            chosen = pick_cluster(vector, [self._clusters[i].members_matrix() for i in near],
                                  join_distance=self.join_distance).index
            where = None if chosen is None else near[chosen]
        elif self.linkage == "centroid":
            where = nearest_cluster(vector, self._centroids.view(), join_distance=self.join_distance).index
        else:
            found = nearest_cluster(vector, self._members.view(), join_distance=self.join_distance).index
            where = None if found is None else self._member_label[found]
        if where is None:
            where = len(self._clusters)
            self._clusters.append(_Cluster(total=vector.copy(), count=1))
            self._centroids.append(vector)
            if self.linkage == "average":
                self._clusters[where].members.append(vector)
        else:
            cluster = self._clusters[where]
            cluster.total = cluster.total + vector
            cluster.count += 1
            if self.linkage == "average":
                cluster.members.append(vector)
            self._centroids.set(where, cluster.centroid)
        if self.linkage == "member":
            self._members.append(vector)
            self._member_label.append(where)
        self.labels.append(where)
        return where


class _Rows:
    """A matrix that grows by rows in amortised constant time (capacity doubles)."""

    def __init__(self) -> None:
        self._data = np.empty((0, 0), dtype=np.float32)
        self._used = 0

    def view(self) -> npt.NDArray[np.float32]:
        return self._data[: self._used]  # (0, 0) while empty: nearest_cluster answers "new"

    def append(self, row: Vector) -> None:
        if self._used == len(self._data):
            grown = np.empty((max(16, 2 * len(self._data)), row.size), dtype=np.float32)
            if self._used:
                grown[: self._used] = self._data[: self._used]
            self._data = grown
        self._data[self._used] = row
        self._used += 1

    def set(self, index: int, row: Vector) -> None:
        self._data[index] = row


def cluster_incrementally(embeddings: Sequence[npt.ArrayLike] | npt.NDArray[np.float32], *,
                          join_distance: float = DEFAULT_JOIN_DISTANCE, linkage: Linkage = "average") -> list[int]:
    """Labels of ``embeddings`` taken in the order given."""
    clusterer = IncrementalClusterer(join_distance=join_distance, linkage=linkage)
    for embedding in embeddings:
        clusterer.add(embedding)
    return clusterer.labels
