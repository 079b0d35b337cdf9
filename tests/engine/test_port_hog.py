"""The HOG face detector port against ``dlib.get_frontal_face_detector()`` on real photos.

All three detectors (the numpy reference, torch, and dlib's own scan run level by level in
parallel) reproduce dlib bit for bit: the same rectangles, detector indices and scores (compared
with ``==``). dlib does not expose its fHOG features in Python, so features are checked through
the scores, which depend on every one of them, and the torch features against the numpy ones
directly. Full-size photos at upsample 1 take minutes on a small CPU, so upsample 1 runs on every
photo downscaled to 640 px (the full-size run is marked slow).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

dlib = pytest.importorskip("dlib")
torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from face_engine.port.dat_format import DatFormatError  # noqa: E402
from face_engine.port.hog.dlib_levels import DlibLevelsDetector  # noqa: E402
from face_engine.port.hog.fhog import extract_fhog_features, orientation_table  # noqa: E402
from face_engine.port.hog.layout import canvas_layout  # noqa: E402
from face_engine.port.hog.model import (  # noqa: E402
    HogModel,
    dlib_frontal_face_bytes,
    load_frontal_face_model,
    parse_hog_detector,
    serialize_hog_detector,
)
from face_engine.port.hog.pyramid import level_sizes, pyramid_down6, pyramid_up, resize_u8  # noqa: E402
from face_engine.port.hog.scan import NumpyHogDetector  # noqa: E402
from face_engine.port.hog.svd import dlib_svd, separable_filters  # noqa: E402
from face_engine.port.hog.torch_hog import TorchHogDetector, fhog_canvas  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data"
PHOTOS = sorted(str(p.relative_to(DATA)) for p in DATA.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})


def load(photo: str, long_side: int | None = None) -> np.ndarray:
    image = Image.open(DATA / photo).convert("RGB")
    if long_side is not None and max(image.size) > long_side:
        scale = long_side / max(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
    return np.asarray(image)


def dlib_run(detector, image: np.ndarray, upsample: int, adjust: float = 0.0) -> list[tuple]:
    rects, scores, indices = detector.run(image, upsample, adjust)
    return [(r.left(), r.top(), r.right(), r.bottom(), s, i) for r, s, i in zip(rects, scores, indices, strict=True)]


def as_tuples(found) -> list[tuple]:
    return [tuple(d) for d in found]


@pytest.fixture(scope="module")
def model() -> HogModel:
    return load_frontal_face_model()


@pytest.fixture(scope="module")
def reference(model: HogModel) -> NumpyHogDetector:
    return NumpyHogDetector(model)


@pytest.fixture(scope="module")
def fast(model: HogModel) -> TorchHogDetector:
    return TorchHogDetector(model, device="cpu")


@pytest.fixture(scope="module")
def levels_parallel(model: HogModel) -> DlibLevelsDetector:
    return DlibLevelsDetector(model, threads=2)


@pytest.fixture(scope="module")
def dlib_hog():
    return dlib.get_frontal_face_detector()


@pytest.fixture(scope="module")
def detectors(reference: NumpyHogDetector, fast: TorchHogDetector, levels_parallel: DlibLevelsDetector) -> dict:
    return {"numpy": reference, "torch": fast, "dlib-levels": levels_parallel}


# --- the filters --------------------------------------------------------------------------------


def test_filters_come_from_the_installed_dlib(model: HogModel) -> None:
    s = model.scanner
    assert (s.cell_size, s.padding, s.window, s.filter_size) == (8, 0, (80, 80), (10, 10))
    assert (s.min_layer, s.max_pyramid_levels, s.num_dims) == ((64, 64), 1000, 3100)
    assert model.num_detectors == 5
    assert model.weights.shape == (5, 3101)
    assert 0.3 < model.nms_iou < 0.35 and 0.75 < model.nms_covered < 0.8
    for bank in model.banks:
        assert bank.filters.shape == (31, 10, 10) and bank.filters.dtype == np.float32
        assert 0 < bank.threshold < 10
        assert bank.separable  # dlib scans all five with their rank-1 terms
        assert all(1 <= len(r) <= 10 for r in bank.row_filters)


def test_saving_the_parsed_detector_gives_dlibs_bytes(model: HogModel) -> None:
    assert serialize_hog_detector(model) == dlib_frontal_face_bytes()


def test_parser_reads_to_the_last_byte() -> None:
    data = dlib_frontal_face_bytes()
    with pytest.raises(DatFormatError, match="truncated"):
        parse_hog_detector(data[:-3])
    with pytest.raises(DatFormatError, match="trailing"):
        parse_hog_detector(data + b"\x01\x00")
    with pytest.raises(DatFormatError, match="version"):
        parse_hog_detector(b"\x01\x07" + data[2:])
    with pytest.raises(DatFormatError, match="empty"):
        parse_hog_detector(b"")


def test_dlib_svd_decomposes_every_filter(model: HogModel) -> None:
    for w in model.weights[:2]:
        for i in range(31):
            f = w[i * 100 : (i + 1) * 100].reshape(10, 10)
            u, s, v = dlib_svd(f)
            np.testing.assert_allclose(u @ np.diag(s) @ v.T, f, atol=1e-12)
            np.testing.assert_allclose(np.sort(s)[::-1], np.linalg.svd(f, compute_uv=False), atol=1e-12)


def test_separable_terms_approximate_the_filter(model: HogModel) -> None:
    f = model.weights[0][:100].reshape(10, 10)
    rows, cols = separable_filters(f)
    approx = sum(np.outer(c.astype(np.float64), r.astype(np.float64)) for r, c in zip(rows, cols, strict=True))
    s = np.linalg.svd(f, compute_uv=False)
    dropped = s[len(rows) :]
    assert np.abs(approx - f).max() <= dropped.sum() + 1e-6


# --- pyramid and features -----------------------------------------------------------------------


@pytest.mark.parametrize("gray", [False, True], ids=["rgb", "gray"])
def test_resizes_equal_dlibs(gray: bool) -> None:
    image = load("misc/obama-240p.jpg")
    if gray:
        image = np.ascontiguousarray(image[..., 1])
    assert np.array_equal(pyramid_down6(image), np.asarray(dlib.pyramid_down(6)(image)))
    h, w = image.shape[:2]
    assert np.array_equal(pyramid_up(image), np.asarray(dlib.resize_image(image, 2 * h + 1, 2 * w + 2)))
    for size in [(37, 61), (1, 5), (239, 426)]:
        assert np.array_equal(resize_u8(image, *size), np.asarray(dlib.resize_image(image, *size)))


def test_level_sizes_follow_dlibs_rectangle_rule(model: HogModel) -> None:
    s = model.scanner
    sizes = level_sizes(720, 1280, s.min_layer, s.max_pyramid_levels)
    assert sizes[:3] == [(720, 1280), (600, 1066), (500, 888)]
    assert len(sizes) == 14 and sizes[-1] == (65, 117)  # (79, 141) mapped down is still ≥ 64 a side
    assert level_sizes(50, 50, s.min_layer, s.max_pyramid_levels) == [(50, 50)]


def test_orientation_table_is_symmetric_under_negation() -> None:
    table = orientation_table().astype(int)
    # −g points the other way: the same unsigned orientation, the other sign (except g = 0)
    flipped = table[::-1, ::-1]
    nonzero = np.ones_like(table, bool)
    nonzero[255, 255] = False
    assert np.all((flipped[nonzero] % 9) == (table[nonzero] % 9))


@pytest.mark.parametrize("gray", [False, True], ids=["rgb", "gray"])
def test_torch_features_equal_numpy_bit_for_bit(model: HogModel, fast: TorchHogDetector, gray: bool) -> None:
    image = load("misc/obama_small.jpg")
    if gray:
        image = np.ascontiguousarray(image[..., 0])
    layout, mask, _ = fast.canvas(*image.shape[:2])
    planes = torch.from_numpy(image.copy())
    planes = planes[None, None] if gray else planes.permute(2, 0, 1)[None]
    levels = fast.pyramid(planes, layout)
    feats = fhog_canvas(levels, layout, fast.ori_table, fast.mag_table, mask)[0].numpy()
    reference = NumpyHogDetector(model).levels(image)
    for lv, level in zip(layout.levels, reference, strict=True):
        expected = extract_fhog_features(level)
        if not lv.has_features:
            assert expected.size == 0
            continue
        got = feats[lv.cy + 2 : lv.cy + 2 + lv.hog_r, lv.cx + 2 : lv.cx + 2 + lv.hog_c].transpose(2, 0, 1)
        assert np.array_equal(got, expected), lv


def test_features_of_a_small_image() -> None:
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    feats = extract_fhog_features(image, 8, 10, 10)
    assert feats.shape == (31, 3 + 9, 4 + 9)  # 5×6 cells, 3×4 with features, padded for 10×10 filters
    inner = feats[:, 4:7, 4:8]
    assert np.all(inner >= 0) and np.all(inner[:27] <= 0.4 + 1e-6)  # 4 × 0.5 × 0.2 at most
    assert np.count_nonzero(feats) == np.count_nonzero(inner)
    assert extract_fhog_features(image[:20, :20]).shape == (31, 1, 1)  # 3×3 cells: one has features
    assert extract_fhog_features(image[:12, :12]).shape == (31, 0, 0)  # 2×2 cells: none


def test_canvas_levels_do_not_overlap(model: HogModel) -> None:
    layout = canvas_layout(1441, 2562, model.scanner)
    taken = np.zeros(layout.cells, bool)
    for lv in layout.levels:
        rows, cols = lv.box()
        y, x = lv.cy - lv.margins[0], lv.cx - lv.margins[0]
        assert not taken[y : y + rows, x : x + cols].any()
        taken[y : y + rows, x : x + cols] = True


# --- detections against dlib --------------------------------------------------------------------


@pytest.mark.parametrize("photo", PHOTOS)
def test_fast_detector_equals_dlib(photo: str, fast: TorchHogDetector, dlib_hog) -> None:
    image = load(photo)
    assert as_tuples(fast.detect(image, 0)) == dlib_run(dlib_hog, image, 0)


@pytest.mark.parametrize("photo", PHOTOS)
def test_fast_detector_equals_dlib_upsampled(photo: str, fast: TorchHogDetector, dlib_hog) -> None:
    image = load(photo, long_side=640)
    assert as_tuples(fast.detect(image, 1)) == dlib_run(dlib_hog, image, 1)


@pytest.mark.slow
@pytest.mark.parametrize("photo", PHOTOS)
def test_fast_detector_equals_dlib_upsampled_full_size(photo: str, fast: TorchHogDetector, dlib_hog) -> None:
    image = load(photo)
    assert as_tuples(fast.detect(image, 1)) == dlib_run(dlib_hog, image, 1)


@pytest.mark.parametrize(("photo", "upsample"), [
    ("people/test/obama_and_biden.jpg", 0), ("misc/two_people.jpg", 0), ("people/test/kit_with_rose.jpg", 0),
    ("misc/obama_small.jpg", 1), ("misc/obama-240p.jpg", 1),
])  # fmt: skip
def test_reference_equals_dlib(photo: str, upsample: int, reference: NumpyHogDetector, dlib_hog) -> None:
    image = load(photo)
    found = reference.detect(image, upsample)
    assert found, "the photo has a face"
    assert as_tuples(found) == dlib_run(dlib_hog, image, upsample)


@pytest.mark.parametrize("photo", PHOTOS[::3])
def test_level_parallel_dlib_equals_dlib(photo: str, levels_parallel: DlibLevelsDetector, dlib_hog) -> None:
    image = load(photo)
    for adjust in (0.0, -0.5):
        assert as_tuples(levels_parallel.detect(image, 0, adjust)) == dlib_run(dlib_hog, image, 0, adjust)
    small = load(photo, long_side=640)
    assert as_tuples(levels_parallel.detect(small, 1)) == dlib_run(dlib_hog, small, 1)


def test_torch_equals_numpy(reference: NumpyHogDetector, fast: TorchHogDetector) -> None:
    image = load("people/test/obama_and_biden.jpg", long_side=800)
    for adjust in (0.0, -0.6):
        assert fast.detect(image, 0, adjust) == reference.detect(image, 0, adjust)


def test_adjusted_threshold_equals_dlib(fast: TorchHogDetector, dlib_hog) -> None:
    image = load("misc/two_people.jpg", long_side=640)
    loose = as_tuples(fast.detect(image, 0, -1.2))
    assert loose == dlib_run(dlib_hog, image, 0, -1.2)
    assert any(d[4] < 0 for d in loose)  # windows below the detectors' own thresholds


def test_batch_equals_one_by_one(fast: TorchHogDetector) -> None:
    a = load("misc/obama-240p.jpg")
    b = load("misc/obama_small.jpg")
    c = np.ascontiguousarray(a[::-1])  # same size as a, other content
    gray = np.ascontiguousarray(b[..., 0])
    images = [a, b, c, gray, a]
    for upsample in (0, 1):
        batch = fast.detect_batch(images, upsample)
        assert batch == [fast.detect(im, upsample) for im in images]
    assert batch[0] == batch[4] and batch[0]


@pytest.mark.parametrize("which", ["numpy", "torch", "dlib-levels"])
def test_gray_images_take_dlibs_gray_path(which: str, detectors: dict, dlib_hog) -> None:
    detector = detectors[which]
    image = np.ascontiguousarray(load("misc/obama-480p.jpg")[..., 1])
    for upsample in (0,) if which == "numpy" else (0, 1):
        expected = dlib_run(dlib_hog, image, upsample)
        assert expected
        assert as_tuples(detector.detect(image, upsample)) == expected


@pytest.mark.parametrize("which", ["numpy", "torch", "dlib-levels"])
def test_unsupported_images_are_refused_like_dlib(which: str, detectors: dict, dlib_hog) -> None:
    detector = detectors[which]
    rgba = np.zeros((100, 100, 4), np.uint8)
    with pytest.raises(RuntimeError):
        dlib_hog.run(rgba, 0, 0.0)
    with pytest.raises(ValueError, match="8bit gray or RGB"):
        detector.detect(rgba, 0)
    with pytest.raises(ValueError, match="8bit gray or RGB"):
        detector.detect(np.zeros((100, 100, 3), np.float32), 0)
    with pytest.raises(ValueError):
        detector.detect(np.zeros((100, 100, 3), np.uint8), -1)


@pytest.mark.parametrize("size", [(0, 0), (1, 1), (7, 9), (12, 12), (20, 20), (60, 79), (79, 200)])
@pytest.mark.parametrize("which", ["numpy", "torch", "dlib-levels"])
def test_images_smaller_than_the_window(size: tuple[int, int], which: str, detectors: dict, dlib_hog) -> None:
    """No faces and no error; windows that hang over the image's edge are scanned as dlib does
    (a lowered threshold finds some in noise, the same ones)."""
    detector = detectors[which]
    image = np.random.default_rng(1).integers(0, 256, (*size, 3), dtype=np.uint8)
    for upsample in (0, 1):
        assert detector.detect(image, upsample) == []
        assert as_tuples(detector.detect(image, upsample, -1.5)) == dlib_run(dlib_hog, image, upsample, -1.5)


@pytest.mark.parametrize("backend", ["torch", "dlib-levels"])
def test_session_matches_dlib_session(backend: str) -> None:
    from face_engine.sessions.dlib_session import HogDetectorSession
    from face_engine.sessions.hog_port_session import HogPortSession

    image = load("people/test/obama_and_biden.jpg", long_side=640)
    port = HogPortSession(backend=backend, device="cpu", threads=2)
    expected = HogDetectorSession().detect(image, 1)
    assert len(expected) >= 2  # Obama and Biden (and one more window dlib reports here)
    assert port.detect(image, 1) == expected
    assert port.detect_many([image, image], 1) == [expected, expected]
    with pytest.raises(ValueError, match="unknown HOG backend"):
        HogPortSession(backend="opencl")
