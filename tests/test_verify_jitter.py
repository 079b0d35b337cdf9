"""Verify's jittered embedding (FACE_VERIFY_JITTERS): the engine's mean, the setting, the API."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

from conftest import TEST, TRAIN, enrol_folder, upload
from face_engine.matching import distance, is_match
from face_engine.models.jitter import jitter_chips
from face_engine.settings import EngineSettings
from face_engine.types import EMBEDDING_DIM

# The project's photos of one face each (misc/biden.jpg is train/biden/biden.jpg): five people, two or
# three photos each.
SINGLE_FACE = [
    TRAIN / "obama" / "obama.jpg", TRAIN / "obama" / "obama2.jpg", TEST / "obama1.jpg",
    TRAIN / "biden" / "biden.jpg", TRAIN / "biden" / "biden2.jpg",
    TRAIN / "kit_harington" / "john1.jpeg", TRAIN / "kit_harington" / "john2.jpeg", TEST / "johnsnow_test1.jpg",
    TRAIN / "rose_leslie" / "img1.jpg", TRAIN / "rose_leslie" / "img2.jpg",
    TRAIN / "alex_lacamoire" / "img1.jpg", TEST / "alex_lacamoire1.jpg",
]


@pytest.fixture(scope="module")
def faces(engine):
    """Each photo's largest face, analysed once for the module."""
    results = engine.analyze_bytes([path.read_bytes() for path in SINGLE_FACE])
    return {path: result.largest for path, result in zip(SINGLE_FACE, results, strict=True)}


def with_verify_jitters(monkeypatch, engine, count: int) -> None:
    """The process's pipeline with FACE_VERIFY_JITTERS at ``count``: only its settings change (the
    loaded models stay; ``probe_embedding`` reads the count from there)."""
    monkeypatch.setattr(engine, "settings", replace(engine.settings, verify_jitters=count))


# --- engine ---------------------------------------------------------------------------------------


def test_probe_embedding_is_the_mean_of_the_plain_and_jittered_embeddings(engine, faces):
    face = faces[TEST / "obama1.jpg"]
    assert engine.settings.verify_jitters == 5
    probe = engine.probe_embedding(face)
    expected = np.mean(np.stack([face.embedding, *engine.embedder.predict(jitter_chips(face.chip, 5)[1:])]), axis=0)
    assert probe.dtype == np.float32 and probe.shape == (EMBEDDING_DIM,)
    assert np.array_equal(probe, expected.astype(np.float32))
    assert np.array_equal(probe, engine.probe_embedding(face))  # deterministic: the same chips every time
    assert 0 < distance(probe, face.embedding) < 0.2


def test_probe_embedding_uses_the_setting(monkeypatch, engine, faces):
    face = faces[TEST / "obama1.jpg"]
    with_verify_jitters(monkeypatch, engine, 1)
    assert engine.probe_embedding(face) is face.embedding  # no extra embedding at all
    with_verify_jitters(monkeypatch, engine, 3)
    three = engine.embedder.predict(jitter_chips(face.chip, 3)[1:])
    assert np.array_equal(engine.probe_embedding(face),
                          np.mean(np.stack([face.embedding, *three]), axis=0).astype(np.float32))


def test_probe_embedding_keeps_every_decision_on_the_projects_photos(engine, faces):
    """Every pair of the project's one-face photos: the jittered distance differs from the plain one,
    the decision at the default threshold does not (LFW's pairs are where it gains)."""
    threshold = engine.settings.match_threshold
    probes = {path: engine.probe_embedding(face) for path, face in faces.items()}
    changes = []
    for a, b in itertools.combinations(SINGLE_FACE, 2):
        plain = distance(faces[a].embedding, faces[b].embedding)
        jittered = distance(probes[a], probes[b])
        assert is_match(jittered, threshold) == is_match(plain, threshold), (a.name, b.name, plain, jittered)
        changes.append(abs(jittered - plain))
    # Measured: 0.018 on average (the smallest 8e-5), mostly shorter, as on LFW.
    assert min(changes) > 1e-6 and np.mean(changes) > 5e-3


# --- settings -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [(None, 5), ("", 5), ("1", 1), ("10", 10), (" 3 ", 3)])
def test_verify_jitters_from_the_environment(raw, expected):
    env = {} if raw is None else {"FACE_VERIFY_JITTERS": raw}
    assert EngineSettings.from_env(env).verify_jitters == expected


@pytest.mark.parametrize("raw", ["0", "-2", "two", "2.5"])
def test_bad_verify_jitters_are_refused_by_name(raw):
    with pytest.raises(ValueError, match="FACE_VERIFY_JITTERS"):
        EngineSettings.from_env({"FACE_VERIFY_JITTERS": raw})


# --- API ------------------------------------------------------------------------------------------

PAIRS = [
    (TRAIN / "obama" / "obama.jpg", TEST / "obama1.jpg", True),
    (TRAIN / "kit_harington" / "john1.jpeg", TEST / "johnsnow_test1.jpg", True),
    (TRAIN / "obama" / "obama.jpg", TRAIN / "biden" / "biden.jpg", False),
]


def verify_pair(client, a, b) -> dict:
    response = client.post("/api/faces/verify/", {"image_a": upload(a), "image_b": upload(b)})
    assert response.status_code == 200, response.content
    return response.json()


def test_verify_two_images_at_one_jitter_is_the_plain_distance(monkeypatch, user_client, engine, faces):
    with_verify_jitters(monkeypatch, engine, 1)
    for a, b, same in PAIRS:
        body = verify_pair(user_client, a, b)
        assert body["distance"] == pytest.approx(distance(faces[a].embedding, faces[b].embedding), abs=2e-6)
        assert body["is_match"] is same


def test_verify_two_images_by_default_is_the_jittered_distance(user_client, engine, faces):
    for a, b, same in PAIRS:
        body = verify_pair(user_client, a, b)
        plain = distance(faces[a].embedding, faces[b].embedding)
        jittered = distance(engine.probe_embedding(faces[a]), engine.probe_embedding(faces[b]))
        assert body["distance"] == pytest.approx(jittered, abs=2e-6)
        assert abs(body["distance"] - plain) > 1e-4
        assert body["is_match"] is same  # the response keeps its shape:
        assert set(body) == {"success", "distance", "is_match", "confidence", "threshold", "processing_time_ms"}


def test_verify_against_a_person_jitters_the_image_side_only(monkeypatch, db, user_client, engine, faces):
    """The person's faces were enrolled as jittered means already (FACE_ENROL_JITTERS): only the
    image's embedding changes with FACE_VERIFY_JITTERS."""
    from people.models import Face, embedding_matrix

    people = enrol_folder(first_only=True)
    probe = faces[TEST / "obama1.jpg"]
    answers = {}
    for count in (1, 5):
        with_verify_jitters(monkeypatch, engine, count)
        for name in ("obama", "biden"):
            body = user_client.post("/api/faces/verify/", {"image": upload(TEST / "obama1.jpg"),
                                                           "person_id": people[name].pk}).json()
            enrolled = embedding_matrix(list(Face.objects.filter(person=people[name]).values_list("embedding",
                                                                                                 flat=True)))
            expected = np.linalg.norm(enrolled - engine.probe_embedding(probe), axis=1).min()
            assert body["distance"] == pytest.approx(float(expected), abs=2e-6)
            assert body["is_match"] is (name == "obama")
            answers[count, name] = body["distance"]
    assert answers[1, "obama"] != answers[5, "obama"]
