"""compare_faces and face_distance: Euclidean distances as a numpy array, matches as a list, and
empty answers for empty lists and arrays."""

from __future__ import annotations

import numpy as np
import pytest

from face_engine.compat import api


@pytest.fixture(scope="module")
def faces(photo):
    return {name: api.face_encodings(photo(f"{name}.jpg"))[0] for name in ("obama", "obama2", "obama3", "biden")}


def test_distances_tell_people_apart(faces):
    others = [faces["obama2"], faces["obama3"], faces["biden"]]
    distances = api.face_distance(others, faces["obama"])
    assert isinstance(distances, np.ndarray) and distances.shape == (3,)
    assert distances[0] <= 0.6 and distances[1] <= 0.6 and distances[2] > 0.6
    assert np.allclose(distances, [np.linalg.norm(o - faces["obama"]) for o in others])
    assert np.array_equal(api.face_distance(np.stack(others), faces["obama"]), distances)
    assert api.face_distance([faces["obama"]], faces["obama"])[0] == 0.0


def test_matches_are_a_list_at_the_tolerance(faces):
    others = [faces["obama2"], faces["obama3"], faces["biden"]]
    matches = api.compare_faces(others, faces["obama"])
    assert isinstance(matches, list) and [bool(m) for m in matches] == [True, True, False]
    distances = api.face_distance(others, faces["obama"])
    strict = api.compare_faces(others, faces["obama"], tolerance=float(distances[:2].min()))
    assert [bool(m) for m in strict] == [bool(d <= distances[:2].min()) for d in distances]
    assert [bool(m) for m in api.compare_faces(others, faces["obama"], tolerance=2.0)] == [True] * 3


@pytest.mark.parametrize("empty", [[], np.array([])], ids=["list", "array"])
def test_nothing_to_compare_with(empty, faces):
    distances = api.face_distance(empty, faces["biden"])
    assert isinstance(distances, np.ndarray) and len(distances) == 0
    matches = api.compare_faces(empty, faces["biden"])
    assert isinstance(matches, list) and matches == []
