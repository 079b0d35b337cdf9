"""The fast path (face_engine.compat.batch): many images at once, each with exactly what the
one-image API gives it, unreadable files named rather than fatal."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from face_engine.compat import api, batch

NAMES = ["obama.jpg", "two_people.jpg", "obama_small.jpg", "obama-240p.jpg"]


def assert_same_encodings(many, one_by_one):
    assert [len(x) for x in many] == [len(x) for x in one_by_one]
    for xs, ys in zip(many, one_by_one, strict=True):
        for x, y in zip(xs, ys, strict=True):
            # One network call for every face may round differently from one call per photo.
            assert x.dtype == np.float64 and np.max(np.abs(x - y)) < 1e-6


@pytest.mark.parametrize("workers", [1, 2])
def test_locations_equal_one_image_at_a_time(workers, photo):
    images = [photo(n) for n in NAMES]
    assert batch.face_locations_batch(images, workers=workers) == [api.face_locations(i) for i in images]
    small = [photo("obama_small.jpg"), photo("obama-240p.jpg")]
    assert batch.face_locations_batch(small, 0, "cnn") == [api.face_locations(i, 0, "cnn") for i in small]


def test_encodings_equal_one_image_at_a_time(photo):
    images = [photo(n) for n in NAMES]
    many = batch.face_encodings_batch(images, workers=2)
    assert_same_encodings(many, [api.face_encodings(i) for i in images])
    boxes = [api.face_locations(i) for i in images]
    assert_same_encodings(batch.face_encodings_batch(images, boxes), many)
    with pytest.raises(ValueError, match="lists for"):
        batch.face_encodings_batch(images, boxes[:2])


def test_cnn_detection_and_jitter_options(photo):
    images = [photo("obama-240p.jpg"), photo("obama_small.jpg")]
    cnn = batch.face_encodings_batch(images, detection_model="cnn", number_of_times_to_upsample=1)
    boxes = [api.face_locations(i, 1, "cnn") for i in images]
    assert_same_encodings(cnn, [api.face_encodings(i, b) for i, b in zip(images, boxes, strict=True)])
    jittered = batch.face_encodings_batch(images, boxes, num_jitters=3)
    assert_same_encodings(jittered, [api.face_encodings(i, b, 3) for i, b in zip(images, boxes, strict=True)])


@pytest.fixture
def folder(tmp_path, misc):
    for name in ("obama_small.jpg", "obama-240p.jpg"):
        shutil.copy(misc / name, tmp_path / name)
    (tmp_path / "broken.jpg").write_bytes(b"this is not a JPEG")
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_files_stream_in_order_and_name_unreadable_ones(folder, photo):
    paths = [folder / "obama_small.jpg", folder / "broken.jpg", folder / "obama-240p.jpg"]
    results = list(batch.encode_files(paths, chunk_size=2, workers=2))
    assert [p for p, _ in results] == [str(p) for p in paths]
    assert isinstance(results[1][1], batch.ImageFileError)
    assert results[1][1].path == str(folder / "broken.jpg") and "Pillow" in results[1][1].reason
    assert_same_encodings([results[0][1], results[2][1]],
                          [api.face_encodings(photo("obama_small.jpg")), api.face_encodings(photo("obama-240p.jpg"))])
    located = list(batch.locate_files(paths, number_of_times_to_upsample=1))
    assert located[0][1] == api.face_locations(photo("obama_small.jpg"), 1) and located[0][1]
    assert isinstance(located[1][1], batch.ImageFileError)


def test_large_images_are_shrunk_when_asked(misc, photo):
    image = photo("obama-480p.jpg")
    thumb = Image.fromarray(image)
    thumb.thumbnail((400, 400), Image.Resampling.LANCZOS)
    ((_, found),) = batch.encode_files([misc / "obama-480p.jpg"], max_side=400)
    assert_same_encodings([found], [api.face_encodings(np.array(thumb))])
    assert found and not np.array_equal(found[0], api.face_encodings(image)[0])


def test_folders(folder):
    assert sorted(batch.image_files_in_folder(folder)) == sorted(
        str(folder / n) for n in ("obama_small.jpg", "obama-240p.jpg", "broken.jpg"))
    with pytest.raises(batch.ImageFileError):
        batch.encode_folder(folder)
    encoded = batch.encode_folder(folder, skip_unreadable=True, number_of_times_to_upsample=2)
    assert sorted(encoded) == sorted(str(folder / n) for n in ("obama_small.jpg", "obama-240p.jpg"))
    assert all(len(v) == 1 for v in encoded.values())
    with pytest.raises(batch.ImageFileError):
        batch.load_images([folder / "obama_small.jpg", folder / "broken.jpg"])
    (loaded,) = batch.load_images([folder / "obama-240p.jpg"], mode="L")
    assert loaded.ndim == 2


def test_the_originals_file_filter_is_kept(tmp_path):
    for name in ("a.JPG", "b.jpeg", "c.png", "d.gif", "e.png.txt", "f.txt"):
        (tmp_path / name).write_bytes(b"")
    # Any name with .jpg/.jpeg/.png in it, in any case: the original matches from the start with ".*".
    assert sorted(n.rsplit("/", 1)[1] for n in batch.image_files_in_folder(tmp_path)) == [
        "a.JPG", "b.jpeg", "c.png", "e.png.txt"]
