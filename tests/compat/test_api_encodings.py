"""face_encodings: the ported chip and ResNet against dlib's face_recognition_model_v1 on the same
landmarks (within 1e-5), at found or given boxes, 5- or 68-point alignment, jittered or not."""

from __future__ import annotations

import warnings

import dlib
import numpy as np
import pytest

from face_engine.compat import NonCommercialModelWarning, api

TOLERANCE = 1e-5


@pytest.mark.parametrize("name", ["obama.jpg", "biden.jpg", "two_people.jpg", "obama_partial_face.jpg",
                                  "32bit.png", "obama-1080p.jpg"])
def test_encodings_equal_dlibs(name, photo, dlib_reference):
    image = photo(name)
    shapes = [dlib_reference.shape_5(image, rect) for rect in dlib_reference.hog(image, 1)]
    expected = dlib_reference.encodings(image, shapes)
    ours = api.face_encodings(image)
    assert len(ours) == len(expected) > 0
    for mine, theirs in zip(ours, expected, strict=True):
        assert mine.shape == (128,) and mine.dtype == np.float64
        assert np.max(np.abs(mine - theirs)) < TOLERANCE


def test_68_point_alignment_equals_dlibs(photo, dlib_reference):
    image = photo("obama2.jpg")
    shapes = [dlib_reference.shape_68(image, rect) for rect in dlib_reference.hog(image, 1)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonCommercialModelWarning)
        ours = api.face_encodings(image, model="large")
    (theirs,) = dlib_reference.encodings(image, shapes)
    assert len(ours) == 1 and np.max(np.abs(ours[0] - theirs)) < TOLERANCE
    # A different alignment of the same face: close, not equal.
    (small,) = api.face_encodings(image)
    assert 0 < np.linalg.norm(small - ours[0]) < 0.2


def test_given_boxes_are_encoded_in_their_order(photo):
    image = photo("two_people.jpg")
    boxes = api.face_locations(image)
    found = api.face_encodings(image)
    reversed_ = api.face_encodings(image, known_face_locations=boxes[::-1])
    assert len(reversed_) == 2
    assert np.array_equal(reversed_[0], found[1]) and np.array_equal(reversed_[1], found[0])
    assert api.face_encodings(image, []) == []


def test_a_box_of_ones_own_is_encoded_like_dlib_does(photo, dlib_reference):
    image = photo("obama.jpg")
    box = (150, 600, 400, 360)  # (top, right, bottom, left), not what a detector gave
    shape = dlib_reference.shape_5(image, dlib.rectangle(360, 150, 600, 400))
    (theirs,) = dlib_reference.encodings(image, [shape])
    (ours,) = api.face_encodings(image, [box])
    assert np.max(np.abs(ours - theirs)) < TOLERANCE


def test_jittered_encodings_are_stable_and_near_dlibs(photo, dlib_reference):
    """dlib jitters with its own process-wide random generator, so its jittered encodings are not
    reproducible and ours cannot equal them; they must be as close as two jittered runs are."""
    image = photo("obama.jpg")
    boxes = api.face_locations(image)
    plain = api.face_encodings(image, boxes)[0]
    first = api.face_encodings(image, boxes, num_jitters=5)[0]
    assert np.array_equal(first, api.face_encodings(image, boxes, num_jitters=5)[0])
    assert first.dtype == np.float64 and 0 < np.linalg.norm(first - plain) < 0.2
    shape = dlib_reference.shape_5(image, dlib_reference.hog(image, 1)[0])
    (dlib_jittered,) = dlib_reference.encodings(image, [shape], jitters=5)
    assert np.linalg.norm(first - dlib_jittered) < 0.1
    # dlib treats 0 and 1 alike: no jitter.
    assert np.array_equal(api.face_encodings(image, boxes, num_jitters=0)[0], plain)


def test_gray_images_need_rgb_to_be_encoded(photo):
    gray = photo("obama-240p.jpg", "L")
    with pytest.raises(TypeError, match="RGB"):
        api.face_encodings(gray)
    assert api.face_encodings(np.zeros((100, 100), np.uint8)) == []  # no face: nothing to encode
    assert api.face_encodings(np.zeros((100, 100, 3), np.uint8)) == []
