"""Loading and detection: face_recognition's signatures and defaults, its (top, right, bottom, left)
boxes trimmed its way, dlib's HOG results as they are and the ported CNN's equal to dlib's."""

from __future__ import annotations

import inspect
import io

import dlib
import numpy as np
import pytest
from PIL import Image, ImageFile

import face_engine.compat as compat
from face_engine.compat import MmodRectangle, api
from tests.compat.conftest import css

# Every public function (and the private ones callers use) with face_recognition 1.3's parameters.
SIGNATURES = {
    "load_image_file": [("file", inspect.Parameter.empty), ("mode", "RGB")],
    "face_locations": [("img", inspect.Parameter.empty), ("number_of_times_to_upsample", 1), ("model", "hog")],
    "_raw_face_locations": [("img", inspect.Parameter.empty), ("number_of_times_to_upsample", 1), ("model", "hog")],
    "batch_face_locations": [("images", inspect.Parameter.empty), ("number_of_times_to_upsample", 1),
                             ("batch_size", 128)],
    "_raw_face_locations_batched": [("images", inspect.Parameter.empty), ("number_of_times_to_upsample", 1),
                                    ("batch_size", 128)],
    "face_landmarks": [("face_image", inspect.Parameter.empty), ("face_locations", None), ("model", "large")],
    "_raw_face_landmarks": [("face_image", inspect.Parameter.empty), ("face_locations", None), ("model", "large")],
    "face_encodings": [("face_image", inspect.Parameter.empty), ("known_face_locations", None), ("num_jitters", 1),
                       ("model", "small")],
    "compare_faces": [("known_face_encodings", inspect.Parameter.empty),
                      ("face_encoding_to_check", inspect.Parameter.empty), ("tolerance", 0.6)],
    "face_distance": [("face_encodings", inspect.Parameter.empty), ("face_to_compare", inspect.Parameter.empty)],
}


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_parameters_and_defaults_are_the_originals(name):
    params = inspect.signature(getattr(api, name)).parameters.values()
    assert [(p.name, p.default) for p in params] == SIGNATURES[name]


def test_package_exports_what_face_recognition_exports():
    for name in ("load_image_file", "face_locations", "batch_face_locations", "face_landmarks", "face_encodings",
                 "compare_faces", "face_distance"):
        assert getattr(compat, name) is getattr(api, name)


def test_load_image_file_modes(misc):
    colour = api.load_image_file(misc / "obama.jpg")
    assert colour.shape == (1137, 910, 3) and colour.dtype == np.uint8
    assert api.load_image_file(misc / "obama.jpg", mode="L").shape == (1137, 910)
    # A 32-bit (RGBA) PNG comes back as plain RGB unless the file's own mode is asked for.
    assert api.load_image_file(misc / "32bit.png").shape == (1200, 626, 3)
    assert api.load_image_file(misc / "32bit.png", mode=None).shape == (1200, 626, 4)
    with open(misc / "obama.jpg", "rb") as handle:
        assert np.array_equal(api.load_image_file(handle), colour)


def test_a_cut_off_file_still_loads_without_changing_pillow_for_everyone(tmp_path, misc):
    whole = (misc / "obama_small.jpg").read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    assert api.load_image_file(cut).shape == (240, 320, 3)
    assert api.load_image_file(io.BytesIO(cut.read_bytes())).shape == (240, 320, 3)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with pytest.raises(OSError), Image.open(cut) as image:
        image.load()


@pytest.mark.parametrize("name", ["obama.jpg", "two_people.jpg", "obama_partial_face.jpg", "32bit.png"])
def test_hog_boxes_are_dlibs_in_top_right_bottom_left_order(name, photo, dlib_reference):
    image = photo(name)
    rects = dlib_reference.hog(image, 1)
    expected = [api._trim_css_to_bounds(css(r), image.shape) for r in rects]
    assert api.face_locations(image) == expected
    assert expected, "every one of these photos has a face"
    for top, right, bottom, left in expected:
        assert 0 <= top < bottom <= image.shape[0] and 0 <= left < right <= image.shape[1]


def test_a_face_cut_by_the_edge_is_trimmed_the_originals_way(photo, dlib_reference):
    image = photo("obama_partial_face.jpg")
    (rect,) = dlib_reference.hog(image, 1)
    assert rect.left() < 0
    ((top, right, bottom, left),) = api.face_locations(image)
    assert (top, right, bottom, left) == (rect.top(), rect.right(), rect.bottom(), 0)
    # The right and bottom edges are clamped to the width and height themselves (not width − 1).
    assert api._trim_css_to_bounds((-5, 700, 300, -1), (240, 320, 3)) == (0, 320, 240, 0)


def test_upsampling_is_passed_to_the_detector(photo, dlib_reference):
    image = photo("obama-240p.jpg")
    for upsample in (0, 1, 2):
        assert api.face_locations(image, upsample) == [
            api._trim_css_to_bounds(css(r), image.shape) for r in dlib_reference.hog(image, upsample)]


def test_raw_results_have_dlibs_types(photo):
    image = photo("obama-240p.jpg")
    hog = api._raw_face_locations(image)
    assert isinstance(hog, dlib.rectangles) and len(hog) == 1
    (cnn,) = api._raw_face_locations(image, 1, model="cnn")
    assert isinstance(cnn, MmodRectangle)
    assert isinstance(cnn.rect, dlib.rectangle) and isinstance(cnn.confidence, float)
    assert cnn.rect.top() < cnn.rect.bottom() and cnn.rect.left() < cnn.rect.right()


@pytest.mark.parametrize(("name", "upsample"), [("obama_small.jpg", 1), ("obama-240p.jpg", 0),
                                                 ("obama-480p.jpg", 0)])
def test_cnn_rectangles_equal_dlibs(name, upsample, photo, dlib_reference):
    image = photo(name)
    ours = api._raw_face_locations(image, upsample, "cnn")
    theirs = dlib_reference.cnn(image, upsample)
    assert [css(m.rect) for m in ours] == [css(m.rect) for m in theirs]
    assert np.allclose([m.confidence for m in ours], [m.confidence for m in theirs], atol=1e-3)
    assert api.face_locations(image, upsample, "cnn") == [
        api._trim_css_to_bounds(css(m.rect), image.shape) for m in theirs]


def test_gray_images_are_detected_like_dlib_does(photo, dlib_reference):
    gray = photo("obama-240p.jpg", "L")
    assert gray.ndim == 2
    assert api.face_locations(gray, 1) == [css(r) for r in dlib_reference.hog(gray, 1)]
    assert [css(m.rect) for m in api._raw_face_locations(gray, 0, "cnn")] == [
        css(m.rect) for m in dlib_reference.cnn(gray, 0)]


def test_cnn_and_hog_find_the_same_face(photo):
    image = photo("obama-480p.jpg")
    ((t1, r1, b1, l1),) = api.face_locations(image, 0, "hog")
    ((t2, r2, b2, l2),) = api.face_locations(image, 0, "cnn")
    inter = max(0, min(r1, r2) - max(l1, l2)) * max(0, min(b1, b2) - max(t1, t2))
    union = (r1 - l1) * (b1 - t1) + (r2 - l2) * (b2 - t2) - inter
    assert inter / union > 0.5


def test_batch_locations_equal_one_image_at_a_time(photo):
    images = [photo("obama-240p.jpg"), photo("obama_small.jpg"), photo("obama-240p.jpg")]
    one_by_one = [api.face_locations(image, 1, "cnn") for image in images]
    assert api.batch_face_locations(images) == one_by_one
    assert api.batch_face_locations(images, 1, batch_size=1) == one_by_one
    raw = api._raw_face_locations_batched(images, number_of_times_to_upsample=1)
    assert [[css(m.rect) for m in faces] for faces in raw] == [
        [css(m.rect) for m in api._raw_face_locations(image, 1, "cnn")] for image in images]
    assert api.batch_face_locations([]) == []
    with pytest.raises(ValueError, match="batch_size"):
        api.batch_face_locations(images, batch_size=0)
