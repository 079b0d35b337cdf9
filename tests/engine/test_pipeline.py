"""FacePipeline on real photos with the real dlib weights; settings; the confidence curve."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from face_engine.matching import confidence, distance, is_match
from face_engine.pipeline import FacePipeline
from face_engine.settings import EngineSettings
from face_engine.types import EMBEDDING_DIM, BoundingBox, DetectorKind, ImageError, ImageFaces

DATA = Path(__file__).resolve().parents[1] / "data"
PHOTOS = {
    "two_people": "misc/two_people.jpg",
    "obama_and_biden": "people/test/obama_and_biden.jpg",
    "kit_with_rose": "people/test/kit_with_rose.jpg",
    "obama-240p": "misc/obama-240p.jpg",
    "obama-480p": "misc/obama-480p.jpg",
    "obama-720p": "misc/obama-720p.jpg",
    "obama-1080p": "misc/obama-1080p.jpg",
    "obama3": "misc/obama3.jpg",  # 1434×2333: detected on a downscaled copy
    "obama": "misc/obama.jpg",
    "obama2": "misc/obama2.jpg",
    "biden": "misc/biden.jpg",
    "obama_small": "misc/obama_small.jpg",
}
EXPECTED_FACES = {
    "two_people": 2,
    "obama_and_biden": 3,
    "kit_with_rose": 2,
    "obama-240p": 1,
    "obama-480p": 1,
    "obama-720p": 1,
    "obama-1080p": 1,
    "obama3": 1,
    "obama": 1,
    "obama2": 1,
    "biden": 1,
    "obama_small": 1,
}


def photo(name: str) -> bytes:
    return (DATA / PHOTOS[name]).read_bytes()


def iou(a: BoundingBox, b: BoundingBox) -> float:
    inter = BoundingBox(
        top=max(a.top, b.top),
        right=min(a.right, b.right),
        bottom=min(a.bottom, b.bottom),
        left=max(a.left, b.left),
    )
    overlap = inter.area if inter.width > 0 and inter.height > 0 else 0
    return overlap / (a.area + b.area - overlap)


def embeddings(result: ImageFaces) -> np.ndarray:
    return np.stack([face.embedding for face in result.faces])


@pytest.fixture(scope="module")
def analysed(engine) -> dict[str, ImageFaces]:
    """Every photo above, analysed once in one batch."""
    names = list(PHOTOS)
    results = engine.analyze_bytes([photo(name) for name in names])
    assert all(isinstance(r, ImageFaces) for r in results), results
    return dict(zip(names, results, strict=True))


def all_faces(analysed):
    return [(name, result, face) for name, result in analysed.items() for face in result.faces]


# --- detection ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(EXPECTED_FACES))
def test_every_face_is_found(analysed, name):
    assert len(analysed[name].faces) == EXPECTED_FACES[name]


def test_faces_are_sorted_largest_first(analysed):
    for result in analysed.values():
        areas = [face.box.area for face in result.faces]
        assert areas == sorted(areas, reverse=True)
    # Not merely detector order: in some photo a smaller face scores higher than a larger one.
    assert any(
        [f.score for f in result.faces] != sorted((f.score for f in result.faces), reverse=True)
        for result in analysed.values()
    )


def test_result_reports_the_original_image_size(analysed):
    assert (analysed["obama3"].width, analysed["obama3"].height) == (1434, 2333)
    assert (analysed["obama-240p"].width, analysed["obama-240p"].height) == (427, 240)


def test_boxes_lie_within_their_image(analysed):
    for _, result, face in all_faces(analysed):
        box = face.box
        assert 0 <= box.left < box.right <= result.width
        assert 0 <= box.top < box.bottom <= result.height


def test_box_of_a_downscaled_detection_is_in_original_pixels(analysed):
    """obama3 is detected at 1024 px (factor ≈ 2.28); detecting at full size finds the same box."""
    full_size = FacePipeline(EngineSettings(detection_max_side=4000, min_face_size=80))
    image = full_size.decode(photo("obama3"))
    [reference] = full_size.detector.predict(image)
    [face] = analysed["obama3"].faces
    assert face.box.right > 1024 * 1434 / 2333  # beyond the downscaled copy's width
    assert iou(face.box, reference.box) > 0.7


def test_landmarks_are_five_points_near_the_box(analysed):
    for _, _, face in all_faces(analysed):
        box = face.box
        margin_x, margin_y = box.width * 0.25, box.height * 0.25
        assert len(face.landmarks) == 5
        for x, y in face.landmarks:
            assert box.left - margin_x <= x <= box.right + margin_x
            assert box.top - margin_y <= y <= box.bottom + margin_y


def test_chips_and_embeddings(analysed):
    for _, _, face in all_faces(analysed):
        assert face.chip.shape == (150, 150, 3) and face.chip.dtype == np.uint8
        assert face.chip.std() > 10  # a picture, not a blank
        assert face.embedding.shape == (EMBEDDING_DIM,) and face.embedding.dtype == np.float32
        # dlib's descriptors are not unit vectors: measured 1.36–1.59 on these photos.
        assert 1.0 < np.linalg.norm(face.embedding) < 1.8


def test_timings(analysed):
    for result in analysed.values():
        assert set(result.timings_ms) == {"decode", "detect", "landmarks", "embed"}
        assert all(ms >= 0 for ms in result.timings_ms.values())
        assert result.timings_ms["decode"] > 0 and result.timings_ms["detect"] > 0


# --- recognition -------------------------------------------------------------------------------


def test_same_person_is_near_and_different_people_are_far(analysed):
    obama, obama2, biden = (analysed[n].largest.embedding for n in ("obama", "obama2", "biden"))
    assert distance(obama, obama2) < 0.6
    assert distance(obama, biden) > 0.6
    assert distance(obama2, biden) > 0.6
    assert is_match(distance(obama, obama2), 0.6) and not is_match(distance(obama, biden), 0.6)


def test_a_small_face_is_still_the_same_person(analysed):
    assert distance(analysed["obama-240p"].largest.embedding, analysed["obama"].largest.embedding) < 0.6


# --- batches -----------------------------------------------------------------------------------


def test_a_batch_equals_one_image_at_a_time(engine, analysed):
    for name in ("obama_small", "kit_with_rose", "obama-240p"):
        [alone] = engine.analyze_bytes([photo(name)])
        assert [f.box for f in alone.faces] == [f.box for f in analysed[name].faces]
        np.testing.assert_allclose(embeddings(alone), embeddings(analysed[name]), atol=1e-6)


def test_a_bad_image_fails_alone(engine, analysed):
    good, bad, also_good = engine.analyze_bytes([photo("obama_small"), b"not an image", photo("obama-240p")])
    assert isinstance(bad, ImageError) and bad.code == "not_an_image"
    for result, name in ((good, "obama_small"), (also_good, "obama-240p")):
        assert isinstance(result, ImageFaces)
        np.testing.assert_allclose(embeddings(result), embeddings(analysed[name]), atol=1e-6)


def test_analyze_takes_arrays(engine, analysed):
    image = engine.decode(photo("obama_small"))
    [result] = engine.analyze([image])
    assert result.timings_ms["decode"] == 0.0
    np.testing.assert_allclose(embeddings(result), embeddings(analysed["obama_small"]), atol=1e-6)


@pytest.mark.parametrize(
    "view",
    [lambda a: a[20:220, 30:300], lambda a: a[:, ::-1], np.asfortranarray],
    ids=["crop", "mirror", "fortran-order"],
)
def test_analyze_takes_array_views(engine, view):
    """dlib refuses non-contiguous arrays; the pipeline used to pass views through (TypeError)."""
    image = view(engine.decode(photo("obama_small")))
    from_view, from_copy = engine.analyze([image, np.ascontiguousarray(image)])
    assert len(from_view.faces) == 1
    np.testing.assert_array_equal(embeddings(from_view), embeddings(from_copy))


def test_analyze_refuses_what_is_not_an_rgb_array(engine):
    with pytest.raises(ValueError, match="H×W×3 uint8"):
        engine.analyze([np.zeros((50, 50), dtype=np.uint8)])


@pytest.mark.parametrize("shape", [(1, 1, 3), (3, 2000, 3), (60, 60, 3)])
def test_tiny_or_thin_images_have_no_face(engine, shape):
    [result] = engine.analyze([np.full(shape, 128, dtype=np.uint8)])
    assert result.faces == ()


def test_empty_batch(engine):
    assert engine.analyze_bytes([]) == []


# --- the CNN detector --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cnn_engine() -> FacePipeline:
    # No upsampling: the CNN on CPU takes ~4 s per image with it, under 1 s without.
    return FacePipeline(EngineSettings(detector=DetectorKind.CNN, detection_max_side=480, min_face_size=80))


def test_cnn_detector_finds_the_face(cnn_engine, analysed):
    [result] = cnn_engine.analyze_bytes([photo("obama_small")])
    assert cnn_engine.detector.name == "dlib-cnn"
    assert cnn_engine.model_id == "dlib-resnet-v1/dlib-shape-predictor-5"  # same embedding space
    assert len(result.faces) == 1
    assert iou(result.faces[0].box, analysed["obama_small"].largest.box) > 0.5
    assert distance(result.faces[0].embedding, analysed["obama_small"].largest.embedding) < 0.6


@pytest.mark.parametrize("shape", [(1, 1, 3), (4, 4, 3), (2, 900, 3), (900, 2, 3)])
def test_cnn_detector_survives_tiny_images(cnn_engine, shape):
    """dlib's MMOD network raised RuntimeError (and then corrupted the heap) on these."""
    [result] = cnn_engine.analyze([np.full(shape, 128, dtype=np.uint8)])
    assert result.faces == ()


# --- settings ----------------------------------------------------------------------------------


def test_settings_defaults_from_an_empty_environment():
    assert EngineSettings.from_env({}) == EngineSettings()


def test_settings_read_from_the_environment():
    settings = EngineSettings.from_env(
        {
            "FACE_DETECTION_MODEL": " CNN ",
            "FACE_MATCH_THRESHOLD": "0.45",
            "MAX_UPLOAD_BYTES": "1000",
            "MAX_IMAGE_PIXELS": "2000",
            "FACE_DETECTION_MAX_SIDE": "800",
            "FACE_INDEX_CODEC": " SQ8 ",
        }
    )
    assert settings.index_codec == "sq8"
    assert settings.detector is DetectorKind.CNN
    assert settings.match_threshold == 0.45
    assert (settings.max_upload_bytes, settings.max_image_pixels) == (1000, 2000)
    assert settings.detection_max_side == 800


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FACE_DETECTION_MODEL", "yolo"),
        ("FACE_MATCH_THRESHOLD", "close"),
        ("FACE_MATCH_THRESHOLD", "0"),
        ("FACE_MATCH_THRESHOLD", "2.5"),
        ("MAX_UPLOAD_BYTES", "10MB"),
        ("MAX_IMAGE_PIXELS", "1.5e6"),
        ("FACE_DETECTION_MAX_SIDE", "big"),
        ("FACE_DETECTION_MAX_SIDE", "32"),
        ("FACE_INDEX_CODEC", "pq"),
    ],
)
def test_settings_refuse_bad_values_naming_the_variable(variable, value):
    with pytest.raises(ValueError, match=variable):
        EngineSettings.from_env({variable: value})


# --- confidence --------------------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [0.4, 0.6, 1.0])
def test_confidence_curve(threshold):
    assert confidence(threshold, threshold) == pytest.approx(0.5)
    assert confidence(0.0, threshold) == 1.0
    assert confidence(2 * threshold, threshold) == 0.0
    assert confidence(3 * threshold, threshold) == 0.0
    grid = np.linspace(0.0, 2.5 * threshold, 501)
    values = np.array([confidence(d, threshold) for d in grid])
    assert ((values >= 0) & (values <= 1)).all()
    assert (np.diff(values) <= 0).all()
    assert (np.diff(values[grid < 2 * threshold]) < 0).all()  # strictly, until it reaches 0


@pytest.mark.parametrize("name", ["MAX_UPLOAD_BYTES", "MAX_IMAGE_PIXELS", "FACE_ENGINE_MAX_BATCH_SIZE",
                                  "FACE_MIN_SIZE"])
@pytest.mark.parametrize("value", ["0", "-5"])
def test_sizes_must_be_positive(name, value):
    with pytest.raises(ValueError, match=name):
        EngineSettings.from_env({name: value})


def test_enrolment_embedding_averages_jittered_chips(engine, analysed):
    from dataclasses import replace

    face = analysed["obama_small"].largest
    jittered = engine.enrol_embedding(face)
    assert engine.settings.enrol_jitters == 10
    assert jittered.dtype == np.float32 and jittered.shape == (EMBEDDING_DIM,)
    assert 0 < distance(jittered, face.embedding) < 0.2
    assert np.array_equal(jittered, engine.enrol_embedding(face))  # deterministic: re-encoding is idempotent
    plain = FacePipeline(replace(engine.settings, enrol_jitters=1))
    assert np.array_equal(plain.enrol_embedding(face), face.embedding)


def test_batch_jpeg_decoder_takes_plain_jpegs_only(engine):
    """Where a batch JPEG decoder is present (nvJPEG on a GPU), plain JPEGs go to it and every
    other file to the CPU decoder; a decoder failure on corrupt data falls back to the CPU, which
    names the error. Here the batch decoder is Pillow itself, so results must equal the CPU's."""
    pipeline = FacePipeline(engine.settings)
    png = io.BytesIO()
    Image.open(DATA / PHOTOS["obama_small"]).save(png, "PNG")
    good = photo("obama_small")
    blobs = [good, png.getvalue(), b"not an image", good[: len(good) // 2]]
    sent: list[int] = []

    def batch_decoder(datas: list[bytes]) -> list[np.ndarray]:
        sent.append(len(datas))
        images = [pipeline.decode(d) for d in datas]  # raises on the truncated file, like nvJPEG
        return images

    def failing(datas: list[bytes]) -> list[np.ndarray]:
        raise RuntimeError("nvJPEG: corrupt data")

    want = [pipeline._decode(b) for b in blobs]
    for decoder in (batch_decoder, failing):
        pipeline.__dict__["_gpu_jpeg"] = decoder
        got = pipeline._decode_many(blobs)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        assert isinstance(got[2], ImageError) and got[2].code == "not_an_image"
        assert isinstance(got[3], ImageError) and got[3].code == want[3].code
    assert sent == [2]  # the good JPEG and the truncated one (its header is fine); not the PNG



def test_without_the_cnn_fallback_hog_cnn_is_hog_alone(engine):
    """Live streams analyse mostly empty frames: they turn the CNN fallback off. A face tilted by
    50° is found by the CNN only."""
    tilted = np.asarray(Image.open(DATA / "misc" / "obama-480p.jpg").convert("RGB").rotate(50, expand=True))
    assert engine.settings.detector == DetectorKind.HOG_CNN
    assert len(engine.analyze([tilted])[0].faces) == 1
    assert engine.analyze([tilted], cnn_fallback=False)[0].faces == ()
    upright = np.asarray(Image.open(DATA / "misc" / "obama-480p.jpg").convert("RGB"))
    assert len(engine.analyze([upright], cnn_fallback=False)[0].faces) == 1
