"""Face chips and embeddings of the port against dlib itself, on every face of the test photos.

Faces are found the way the service did with dlib: HOG detector (upsample 1) + the 5-point
shape predictor. The port must give the *same* chips (bit for bit) and the same descriptors
(max abs difference ≤ 1e-5, torch fp32 and ONNX Runtime CPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

dlib = pytest.importorskip("dlib")
torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from PIL import Image  # noqa: E402

from face_engine.port import convert  # noqa: E402
from face_engine.port.chip import face_chip_details, get_face_chip, get_face_chips  # noqa: E402
from face_engine.weights import LANDMARKS_5, RESNET, weight_path  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data"
PHOTOS = sorted((DATA / "people" / "train").glob("*/*")) + sorted((DATA / "people" / "test").glob("*.jpg"))
TOLERANCE = 1e-5


@dataclass(frozen=True)
class Face:
    photo: str
    image: np.ndarray
    shape: object  # dlib.full_object_detection
    landmarks: np.ndarray  # 5×2 (x, y)


@pytest.fixture(scope="module")
def facerec():
    return dlib.face_recognition_model_v1(str(weight_path(RESNET)))


@pytest.fixture(scope="module")
def faces() -> list[Face]:
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(weight_path(LANDMARKS_5)))
    found = []
    for path in PHOTOS:
        image = np.asarray(Image.open(path).convert("RGB"))
        for rect in detector(image, 1):
            shape = predictor(image, rect)
            pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
            found.append(Face(str(path.relative_to(DATA)), image, shape, pts))
    return found


@pytest.fixture(scope="module")
def dlib_chips(faces: list[Face]) -> np.ndarray:
    return np.stack([dlib.get_face_chip(f.image, f.shape, size=150, padding=0.25) for f in faces])


@pytest.fixture(scope="module")
def dlib_descriptors(faces: list[Face], facerec) -> np.ndarray:
    return np.stack([np.asarray(facerec.compute_face_descriptor(f.image, f.shape)) for f in faces])


@pytest.fixture(scope="module")
def port_chips(faces: list[Face]) -> np.ndarray:
    return np.stack([get_face_chip(f.image, f.landmarks) for f in faces])


@pytest.fixture(scope="module")
def resnet(port_cache: Path):
    return convert.load_resnet(port_cache)


def test_every_photo_has_faces(faces: list[Face]) -> None:
    per_photo = {p: sum(f.photo == p for f in faces) for p in {f.photo for f in faces}}
    assert len(per_photo) == len(PHOTOS)
    assert per_photo["people/test/obama_and_biden.jpg"] == 3
    assert per_photo["people/test/kit_with_rose.jpg"] == 2


# --- chips --------------------------------------------------------------------------------------


def test_chips_are_bit_identical(faces: list[Face], port_chips: np.ndarray, dlib_chips: np.ndarray) -> None:
    assert port_chips.dtype == np.uint8 and port_chips.shape == (len(faces), 150, 150, 3)
    mismatched = {
        f"{f.photo}#{i}": int((a != b).sum())
        for i, (f, a, b) in enumerate(zip(faces, port_chips, dlib_chips, strict=True))
        if not np.array_equal(a, b)
    }
    assert not mismatched, f"pixels differing from dlib.get_face_chip: {mismatched}"


def test_chip_details_match_dlib(faces: list[Face]) -> None:
    for f in faces:
        ref = dlib.get_face_chip_details(f.shape, 150, 0.25)
        mine = face_chip_details(f.landmarks)
        expected = (ref.rect.left(), ref.rect.top(), ref.rect.right(), ref.rect.bottom())
        np.testing.assert_allclose(mine.rect, expected, rtol=0, atol=1e-9)
        assert mine.angle == pytest.approx(ref.angle, abs=1e-12)


def test_batched_chips_equal_single_chips(faces: list[Face], port_chips: np.ndarray) -> None:
    by_photo: dict[str, list[int]] = {}
    for i, f in enumerate(faces):
        by_photo.setdefault(f.photo, []).append(i)
    for indices in by_photo.values():
        image = faces[indices[0]].image
        batch = get_face_chips(image, [faces[i].landmarks for i in indices])
        np.testing.assert_array_equal(batch, port_chips[indices])
    assert get_face_chips(faces[0].image, []).shape == (0, 150, 150, 3)


def test_chips_on_synthetic_flat_and_saturated_images() -> None:
    """Flat regions are where a truncating bilinear would expose a different rounding order."""
    rng = np.random.default_rng(7)
    photo = np.asarray(Image.open(DATA / "people" / "test" / "obama1.jpg").convert("RGB"))
    flat = np.zeros_like(photo)
    flat[:, :700] = 255
    flat[200:600, 500:1000] = (17, 200, 91)
    saturated = np.clip(photo.astype(np.int32) * 3, 0, 255).astype(np.uint8)
    base = np.array([(857, 321), (799, 324), (646, 336), (711, 330), (782, 445)])
    for image in (flat, saturated):
        for _ in range(20):
            scale = rng.uniform(0.15, 1.6)  # from deep pyramids to none
            pts = np.round((base - 750) * scale + 750 + rng.integers(-9, 10, size=(5, 2)))
            parts = dlib.points([dlib.point(int(x), int(y)) for x, y in pts])
            shape = dlib.full_object_detection(dlib.rectangle(0, 0, 1, 1), parts)
            expected = dlib.get_face_chip(image, shape, size=150, padding=0.25)
            np.testing.assert_array_equal(get_face_chip(image, pts), expected)


def test_chip_near_and_beyond_the_border() -> None:
    image = np.asarray(Image.open(DATA / "misc" / "obama_small.jpg").convert("RGB"))
    base = np.array([(200, 80), (185, 81), (150, 83), (165, 82), (178, 110)])
    for shift in ((130, 0), (0, -70), (-160, 120), (400, 400)):
        pts = base + np.array(shift)
        parts = dlib.points([dlib.point(int(x), int(y)) for x, y in pts])
        shape = dlib.full_object_detection(dlib.rectangle(0, 0, 1, 1), parts)
        expected = dlib.get_face_chip(image, shape, size=150, padding=0.25)
        np.testing.assert_array_equal(get_face_chip(image, pts), expected)


def test_chip_rejects_bad_input() -> None:
    image = np.zeros((50, 50, 3), np.uint8)
    with pytest.raises(ValueError, match="5×2"):
        get_face_chip(image, np.zeros((68, 2)))
    with pytest.raises(ValueError, match="uint8"):
        get_face_chip(image.astype(np.float32), np.zeros((5, 2)))


# --- embeddings ---------------------------------------------------------------------------------


def test_parameter_count(resnet) -> None:
    assert sum(p.numel() for p in resnet.parameters()) == 5_607_488


def test_torch_embeddings_match_dlib(resnet, port_chips: np.ndarray, dlib_descriptors: np.ndarray) -> None:
    ours = resnet.embed(port_chips)
    assert ours.dtype == np.float32 and ours.shape == dlib_descriptors.shape
    diff = float(np.abs(ours - dlib_descriptors).max())
    print(f"\ntorch fp32 vs dlib compute_face_descriptor: max abs diff {diff:.3g} over {len(ours)} faces")
    assert diff <= TOLERANCE


def test_torch_network_alone_on_dlib_chips(resnet, dlib_chips: np.ndarray, dlib_descriptors: np.ndarray) -> None:
    assert float(np.abs(resnet.embed(dlib_chips) - dlib_descriptors).max()) <= TOLERANCE


def test_onnx_embeddings_match_dlib(port_cache: Path, port_chips: np.ndarray, dlib_descriptors: np.ndarray) -> None:
    onnx = convert.OnnxResNet(port_cache, threads=2)
    ours = onnx.embed(port_chips)
    diff = float(np.abs(ours - dlib_descriptors).max())
    print(f"\nONNX Runtime CPU vs dlib compute_face_descriptor: max abs diff {diff:.3g}")
    assert diff <= TOLERANCE
    np.testing.assert_allclose(onnx.embed(port_chips[0]), ours[0], rtol=0, atol=1e-6)  # one chip


def test_embed_rejects_bad_chips(resnet) -> None:
    with pytest.raises(ValueError, match="150"):
        resnet.embed(np.zeros((2, 112, 112, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        resnet.embed(np.zeros((2, 150, 150, 3), np.float32))
    assert resnet.embed(np.zeros((0, 150, 150, 3), np.uint8)).shape == (0, 128)
