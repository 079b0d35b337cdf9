"""The ported CNN face detector against ``dlib.cnn_face_detection_model_v1`` on real photos.

dlib's detector needs seconds per image on this CPU, so photos are downscaled (≤ 640 px long
side) and the references are computed once per module.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

dlib = pytest.importorskip("dlib")
torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from PIL import Image  # noqa: E402

from face_engine.port import convert  # noqa: E402
from face_engine.port.detector import decode, pyramid_layout, pyramid_up  # noqa: E402
from face_engine.weights import MMOD_DETECTOR, weight_path  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data"
SCORE_TOLERANCE = 1e-4

# (photo, long side, upsample): several faces, one face, two faces, and one upsampled small photo.
CASES = [
    ("people/test/obama_and_biden.jpg", 640, 0),
    ("people/test/kit_with_rose.jpg", 640, 0),
    ("misc/two_people.jpg", 640, 0),
    ("people/train/rose_leslie/img1.jpg", 480, 0),
    ("misc/obama_small.jpg", 320, 1),
]
IDS = [f"{Path(p).stem}-{side}px-up{up}" for p, side, up in CASES]


def load(photo: str, long_side: int) -> np.ndarray:
    image = Image.open(DATA / photo).convert("RGB")
    scale = long_side / max(image.size)
    if scale < 1:
        size = (round(image.width * scale), round(image.height * scale))
        image = image.resize(size, Image.Resampling.BILINEAR)
    return np.asarray(image)


@pytest.fixture(scope="module")
def dlib_detector():
    return dlib.cnn_face_detection_model_v1(str(weight_path(MMOD_DETECTOR)))


@pytest.fixture(scope="module")
def references(dlib_detector) -> dict[int, list[tuple[int, int, int, int, float]]]:
    """dlib's detections per case, computed lazily and once."""
    cache: dict[int, list[tuple[int, int, int, int, float]]] = {}

    class Lazy(dict):
        def __missing__(self, i: int):
            photo, side, up = CASES[i]
            dets = dlib_detector(load(photo, side), up)
            r = [(d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom(), d.confidence) for d in dets]
            self[i] = r
            return r

    return Lazy(cache)


@pytest.fixture(scope="module")
def torch_detector(port_cache: Path):
    return convert.load_detector(port_cache)


@pytest.fixture(scope="module")
def onnx_detector(port_cache: Path):
    return convert.load_detector(port_cache, backend="onnx")


def assert_same_detections(ours, ref) -> None:
    assert [d[:4] for d in ours] == [d[:4] for d in ref], (ours, ref)
    for (*_, a), (*_, b) in zip(ours, ref, strict=True):
        assert abs(a - b) <= SCORE_TOLERANCE, (a, b)


@pytest.mark.parametrize("case", range(len(CASES)), ids=IDS)
def test_torch_detector_matches_dlib(case: int, torch_detector, references) -> None:
    photo, side, up = CASES[case]
    ours = torch_detector.detect(load(photo, side), upsample=up)
    assert ours, "expected at least one face"
    assert_same_detections(ours, references[case])


@pytest.mark.parametrize("case", range(len(CASES)), ids=IDS)
def test_onnx_detector_matches_dlib(case: int, onnx_detector, references) -> None:
    photo, side, up = CASES[case]
    assert_same_detections(onnx_detector.detect(load(photo, side), upsample=up), references[case])


def test_several_faces_are_found(references) -> None:
    assert len(references[1]) == 2 and len(references[2]) == 2  # kit_with_rose, two_people


def test_tiny_and_gray_images(torch_detector, dlib_detector) -> None:
    # Too small for the network's strided convs (dlib reads uninitialised memory there).
    assert torch_detector.detect(np.full((4, 7, 3), 128, np.uint8)) == []
    assert torch_detector.detect(np.zeros((0, 0, 3), np.uint8)) == []
    rgb = load("people/test/kit_with_rose.jpg", 240)
    gray = rgb[:, :, 1].copy()
    ours = torch_detector.detect(gray)
    assert ours == torch_detector.detect(np.repeat(gray[:, :, None], 3, axis=2))
    ref = [(d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom(), d.confidence) for d in dlib_detector(gray, 0)]
    assert_same_detections(ours, ref)
    with pytest.raises(ValueError):
        torch_detector.detect(rgb.astype(np.float32))


def test_pyramid_layout_geometry() -> None:
    boxes, rows, cols = pyramid_layout(457, 640)
    assert boxes[0] == (11, 11, 650, 467) and cols == 640 + 22
    sizes = [(b[3] - b[1] + 1, b[2] - b[0] + 1) for b in boxes]
    for (h0, w0), (h1, w1) in zip(sizes, sizes[1:], strict=False):
        assert (h1, w1) == (int(5 / 6 * h0), int(5 / 6 * w0))
    for i, a in enumerate(boxes):  # tiles never overlap and stay inside the tensor
        assert 0 <= a[0] <= a[2] < cols and 0 <= a[1] <= a[3] < rows
        for b in boxes[i + 1 :]:
            assert a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1]
    assert pyramid_layout(0, 10) == ([], 0, 0)


def test_pyramid_up_size() -> None:
    assert pyramid_up(np.zeros((10, 20, 3), np.uint8)).shape == (21, 42, 3)


def test_decode_nms_keeps_the_best_of_overlapping_windows() -> None:
    boxes, _, _ = pyramid_layout(200, 200)
    scores = np.full((20, 20), -1.0, np.float32)
    scores[5, 5], scores[5, 6], scores[15, 15] = 0.5, 0.9, 0.1  # adjacent cells overlap heavily
    dets = decode(scores, boxes)
    assert [d[4] for d in dets] == pytest.approx([0.9, 0.1])
    # cell (row 5, col 6) → pyramid point (62, 54) ± 39.5, minus the level-0 origin (11, 11),
    # rounded half away from zero like C's lround: 11.5 → 12, 90.5 → 91, 3.5 → 4, 82.5 → 83.
    assert dets[0][:4] == (12, 4, 91, 83)


# --- the batched torch session: pyramid built with torch, images of one size stacked -----------

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def test_torch_pyramid_equals_numpy() -> None:
    from face_engine.port.detector import tiled_pyramid
    from face_engine.port.torch_pyramid import TorchOps, tiled_pyramid_batch, upsample_planes

    ops = TorchOps(torch.device(DEVICE))
    images = [load("people/test/obama_and_biden.jpg", 301), load("misc/two_people.jpg", 301)[::-1]]
    images = [np.ascontiguousarray(im[:150, :301]) for im in images]  # one size for the batch
    planes = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).to(DEVICE)
    mean = (122.782, 117.001, 104.298)
    data, boxes = tiled_pyramid_batch(planes, mean, 10, 11, ops)
    up = upsample_planes(planes, 1, ops)
    for i, image in enumerate(images):
        want, want_boxes = tiled_pyramid(image, mean, 10, 11)
        assert boxes == want_boxes
        np.testing.assert_array_equal(data[i].cpu().numpy(), want)
        np.testing.assert_array_equal(up[i].permute(1, 2, 0).cpu().numpy(), pyramid_up(image))


def test_torch_session_detect_many_matches_dlib(port_cache: Path, references) -> None:
    """Every case (two of them twice, so a same-size batch of two forms) in one call, fp32."""
    from face_engine.sessions.onnx_session import dlib_rect_to_box
    from face_engine.sessions.torch_session import TorchMmodSession
    from face_engine.types import Precision

    session = TorchMmodSession(data_dir=str(port_cache), device=DEVICE, precision=Precision.FP32, threads=2)
    for up in (0, 1):
        cases = [i for i, c in enumerate(CASES) if c[2] == up]
        cases = cases + cases[:1]
        found = session.detect_many([load(*CASES[i][:2]) for i in cases], up)
        for i, dets in zip(cases, found, strict=True):
            want = [(dlib_rect_to_box(*d[:4]), d[4]) for d in references[i]]
            assert [d.box for d in dets] == [b for b, _ in want]
            assert all(abs(d.score - s) <= SCORE_TOLERANCE for d, (_, s) in zip(dets, want, strict=True))
