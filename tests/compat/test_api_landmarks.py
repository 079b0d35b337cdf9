"""face_landmarks: the 5-point model's three features, the 68-point model's nine (only when asked,
behind a licence warning once per process), the points dlib's predictors give; and the service
itself never names the 68-point model."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from face_engine.compat import NonCommercialModelWarning, _models, api
from face_engine.compat._models import LANDMARKS_68

ROOT = Path(__file__).resolve().parents[2]
FEATURE_SIZES_68 = {"chin": 17, "left_eyebrow": 5, "right_eyebrow": 5, "nose_bridge": 4, "nose_tip": 5,
                    "left_eye": 6, "right_eye": 6, "top_lip": 12, "bottom_lip": 12}


def points(shape):
    return [(p.x, p.y) for p in shape.parts()]


@pytest.fixture
def fresh_notice(monkeypatch):
    """As in a new process: the licence notice not yet given."""
    monkeypatch.setattr(_models, "_notice_given", False)


def test_small_model_gives_dlibs_five_points_as_eyes_and_nose(photo, dlib_reference):
    image = photo("obama.jpg")
    (rect,) = dlib_reference.hog(image, 1)
    expected = points(dlib_reference.shape_5(image, rect))
    (raw,) = api._raw_face_landmarks(image, model="small")
    assert raw.num_parts == 5 and points(raw) == expected
    (named,) = api.face_landmarks(image, model="small")
    # The predictor lists the image-right eye's corners first, then the image-left eye's, then the nose.
    assert named == {"right_eye": expected[0:2], "left_eye": expected[2:4], "nose_tip": [expected[4]]}
    assert all(isinstance(v, int) for point in expected for v in point)


def test_large_model_is_the_default_and_warns_once_per_process(photo, dlib_reference, fresh_notice):
    image = photo("obama.jpg")
    with pytest.warns(NonCommercialModelWarning, match="commercial") as caught:
        (named,) = api.face_landmarks(image)
    assert len(caught) == 1 and "model='small'" in str(caught[0].message)
    assert caught[0].filename == __file__  # points at the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonCommercialModelWarning)
        again = api.face_landmarks(image, model="large")
        api.face_encodings(image, model="large")
    assert again == [named]
    assert {name: len(p) for name, p in named.items()} == FEATURE_SIZES_68
    (rect,) = dlib_reference.hog(image, 1)
    expected = points(dlib_reference.shape_68(image, rect))
    assert named["chin"] == expected[0:17] and named["right_eye"] == expected[42:48]
    # The lips are closed outlines: the outer edge, then the inner edge walked back.
    assert named["top_lip"] == expected[48:55] + expected[60:65][::-1]
    assert named["bottom_lip"] == expected[54:60] + [expected[48], expected[60]] + expected[65:68][::-1] + [
        expected[64]]
    (raw,) = api._raw_face_landmarks(image)
    assert raw.num_parts == 68 and points(raw) == expected


def test_raw_landmarks_warn_too(photo, fresh_notice):
    with pytest.warns(NonCommercialModelWarning):
        api._raw_face_landmarks(photo("obama-240p.jpg"))


def test_landmarks_at_given_boxes(photo, dlib_reference):
    image = photo("two_people.jpg")
    boxes = api.face_locations(image)
    assert len(boxes) == 2
    second = api.face_landmarks(image, [boxes[1]], model="small")
    assert second == [api.face_landmarks(image, model="small")[1]]
    top, right, bottom, left = boxes[1]
    import dlib

    expected = points(dlib_reference.shape_5(image, dlib.rectangle(left, top, right, bottom)))
    assert second[0]["nose_tip"] == [expected[4]]


def test_gray_images_and_images_without_faces(photo):
    gray = photo("obama-240p.jpg", "L")
    (named,) = api.face_landmarks(gray, model="small")
    assert set(named) == {"nose_tip", "left_eye", "right_eye"}
    assert api.face_landmarks(np.zeros((120, 160, 3), np.uint8), model="small") == []


@pytest.mark.parametrize("call", [
    lambda image: api.face_landmarks(image, model="medium"),
    lambda image: api._raw_face_landmarks(image, model="tiny"),
    lambda image: api.face_encodings(image, model="cnn"),
])
def test_an_unknown_landmark_model_is_refused(call, photo):
    with pytest.raises(ValueError, match="Supported models are"):
        call(photo("obama_small.jpg"))


def test_only_the_compat_library_names_the_68_point_model():
    """The service loads the 5-point model only; the 68-point file is named in face_engine.compat
    (and in its tests, its benchmark and docs) and nowhere else."""
    allowed = (ROOT / "face_engine" / "compat", ROOT / "face_engine" / "bench" / "compat.py", ROOT / "tests" / "compat")
    pattern = re.compile(r"shape_predictor_68|pose_predictor_model_location|LANDMARKS_68")
    offenders = []
    for path in ROOT.rglob("*.py"):
        if any(part.startswith(".") for part in path.relative_to(ROOT).parts) or "build" in path.parts:
            continue
        if any(path == a or a in path.parents for a in allowed):
            continue
        if pattern.search(path.read_text(errors="replace")):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
    assert LANDMARKS_68 == "shape_predictor_68_face_landmarks.dat"
