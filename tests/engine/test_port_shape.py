"""The ported 5-point shape predictor (numpy and torch) and the torch face chip, against dlib.

Faces: every photo of tests/data (misc/ and people/, recursively) with the rectangles dlib's HOG
detector (upsample 1) and the CNN detector (upsample 1 below 1000 px, else 0; found with the
port, whose rectangles equal dlib's) return. They are recorded below so that this module does not
spend 20 s detecting; ``test_recorded_hog_rectangles_are_current`` (slow) re-detects them.
The predictor must give dlib's points exactly, and the torch chip the numpy chip's pixels exactly.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

dlib = pytest.importorskip("dlib")
torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from face_engine.port.chip import get_face_chip  # noqa: E402
from face_engine.port.chip_torch import TorchChipExtractor, plan_chip  # noqa: E402
from face_engine.port.dat_format import DatFormatError  # noqa: E402
from face_engine.port.shape import ShapePredictor, unnormalizing_tforms  # noqa: E402
from face_engine.port.shape_format import (  # noqa: E402
    ShapePredictorModel,
    load_shape_predictor,
    parse_shape_predictor_bytes,
    serialize_shape_predictor,
)
from face_engine.port.shape_torch import TorchShapePredictor, sequential_sum_for  # noqa: E402
from face_engine.weights import LANDMARKS_5, weight_path  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data"
Rect = tuple[int, int, int, int]  # dlib's inclusive left, top, right, bottom

# photo: (HOG rectangles, CNN rectangles)
FACES: dict[str, tuple[list[Rect], list[Rect]]] = {
    "misc/32bit.png": ([(171, 290, 438, 558)], [(170, 278, 454, 561)]),
    "misc/biden.jpg": ([(419, 241, 740, 562)], [(428, 235, 712, 518)]),
    "misc/lin-manuel-miranda.png": ([(241, 170, 562, 491)], [(228, 158, 522, 452)]),
    "misc/obama-1080p.jpg": ([(854, 142, 1122, 409)], [(841, 124, 1124, 407)]),
    "misc/obama-240p.jpg": ([(190, 32, 252, 94)], [(192, 27, 249, 84)]),
    "misc/obama-480p.jpg": ([(390, 68, 497, 175)], [(385, 40, 503, 158)]),
    "misc/obama-720p.jpg": ([(572, 98, 758, 284)], [(573, 84, 737, 247)]),
    "misc/obama.jpg": ([(349, 142, 617, 409)], [(375, 154, 611, 390)]),
    "misc/obama2.jpg": ([(171, 290, 438, 558)], [(170, 278, 454, 561)]),
    "misc/obama3.jpg": ([(633, 277, 954, 598)], [(613, 252, 953, 592)]),
    "misc/obama_partial_face.jpg": ([(-56, 142, 191, 365)], [(-84, 117, 199, 400)]),
    "misc/obama_partial_face2.jpg": ([(349, 142, 617, 409)], [(348, 130, 584, 366)]),
    "misc/obama_small.jpg": ([(103, 68, 211, 175)], [(94, 64, 211, 182)]),
    "misc/two_people.jpg": ([(778, 57, 964, 242), (253, 47, 408, 202)], [(225, 54, 388, 218), (795, 85, 932, 221)]),
    "people/test/alex_lacamoire1.jpg": ([(633, 206, 954, 527)], [(613, 153, 953, 493)]),
    "people/test/johnsnow_test1.jpg": ([(262, 180, 448, 366)], [(260, 145, 456, 342)]),
    "people/test/kit_with_rose.jpg": (
        [(79, 130, 154, 204), (247, 92, 354, 199)], [(251, 86, 349, 184), (70, 122, 151, 204)]
    ),
    "people/test/obama1.jpg": ([(546, 204, 932, 590)], [(562, 188, 901, 527)]),
    "people/test/obama_and_biden.jpg": (
        [(737, 449, 923, 634), (1133, 390, 1356, 613), (1594, 1062, 1749, 1216)],
        [(1625, 1059, 1761, 1196), (1131, 377, 1327, 573), (733, 436, 929, 633)],
    ),
    "people/train/alex_lacamoire/img1.jpg": ([(277, 206, 598, 527)], [(256, 158, 596, 497)]),
    "people/train/biden/biden.jpg": ([(419, 241, 740, 562)], [(428, 235, 712, 518)]),
    "people/train/biden/biden2.jpg": ([(451, 297, 913, 759)], [(370, 234, 859, 723)]),
    "people/train/kit_harington/john1.jpeg": ([(683, 110, 812, 239)], [(685, 101, 799, 215)]),
    "people/train/kit_harington/john2.jpeg": ([(283, 98, 469, 284)], [(295, 102, 465, 272)]),
    "people/train/obama/obama.jpg": ([(349, 142, 617, 409)], [(375, 154, 611, 390)]),
    "people/train/obama/obama2.jpg": ([(171, 290, 438, 558)], [(170, 278, 454, 561)]),
    "people/train/rose_leslie/img1.jpg": ([(617, 112, 884, 379)], [(600, 88, 884, 371)]),
    "people/train/rose_leslie/img2.jpg": ([(171, 171, 438, 439)], [(124, 143, 418, 437)]),
}
PHOTOS = sorted(FACES)
# The torch versions run on every device this machine has: the same code on the CPU and on CUDA.
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _dlib_parts(predictor, image: np.ndarray, rect: Rect) -> np.ndarray:
    return np.array([(p.x, p.y) for p in predictor(image, dlib.rectangle(*rect)).parts()], dtype=np.int64)


def _load_dlib(model: ShapePredictorModel):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "probe.dat"
        path.write_bytes(serialize_shape_predictor(model))
        return dlib.shape_predictor(str(path))


@pytest.fixture(scope="module")
def model() -> ShapePredictorModel:
    return load_shape_predictor()


@pytest.fixture(scope="module")
def reference():
    return dlib.shape_predictor(str(weight_path(LANDMARKS_5)))


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return [np.asarray(Image.open(DATA / p).convert("RGB")) for p in PHOTOS]


@pytest.fixture(scope="module")
def faces(images, reference) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rects N×4, image index N, dlib's parts N×5×2) for every recorded face."""
    rects, index = [], []
    for i, photo in enumerate(PHOTOS):
        hog, cnn = FACES[photo]
        rects += hog + cnn
        index += [i] * (len(hog) + len(cnn))
    parts = np.stack([_dlib_parts(reference, images[i], r) for r, i in zip(rects, index, strict=True)])
    return np.array(rects, np.int64), np.array(index, np.int64), parts


@pytest.fixture(scope="module")
def numpy_predictor(model) -> ShapePredictor:
    return ShapePredictor(model)


@pytest.fixture(scope="module", params=DEVICES)
def torch_predictor(model, request) -> TorchShapePredictor:
    return TorchShapePredictor(model, request.param)


# --- the file ------------------------------------------------------------------------------------


def test_parse_matches_what_dlib_reports(model, reference, images) -> None:
    assert (model.num_parts, model.num_cascades, model.num_trees, model.tree_depth) == (5, 15, 500, 4)
    assert model.num_feature_pixels == 800 and model.num_features == 15 * 500 * 16
    assert reference(images[0], dlib.rectangle(0, 0, 99, 99)).num_parts == model.num_parts
    assert model.leaf_values.shape == (15, 500, 16, 10) and model.deltas.shape == (15, 800, 2)
    assert model.split_idx1.max() < 800 and model.anchor_idx.max() < 5


def test_serialize_round_trips_to_the_same_bytes(model) -> None:
    assert serialize_shape_predictor(model) == weight_path(LANDMARKS_5).read_bytes()


@pytest.mark.parametrize("cut", [1, 100, 5_000_000, -1])
def test_truncated_file_is_rejected(cut: int) -> None:
    with pytest.raises(DatFormatError, match="truncated"):
        parse_shape_predictor_bytes(weight_path(LANDMARKS_5).read_bytes()[:cut])


def test_foreign_or_extended_file_is_rejected() -> None:
    data = weight_path(LANDMARKS_5).read_bytes()
    with pytest.raises(DatFormatError, match="unexpected"):
        parse_shape_predictor_bytes(data + b"\x01\x00")
    with pytest.raises(DatFormatError, match="version 2"):
        parse_shape_predictor_bytes(b"\x01\x02" + data[2:])
    with pytest.raises(DatFormatError):
        parse_shape_predictor_bytes(weight_path("mmod_human_face_detector.dat").read_bytes())


# --- points against dlib ---------------------------------------------------------------------------


def test_points_equal_dlib_on_every_face(numpy_predictor, images, faces) -> None:
    rects, index, expected = faces
    assert len(rects) == 64
    got = numpy_predictor.predict_batch(images, rects, index)
    differing = [f"{PHOTOS[i]} {tuple(r)}" for r, i, a, b in zip(rects, index, got, expected, strict=True)
                 if not np.array_equal(a, b)]
    assert not differing, f"points differing from dlib: {differing}"


def test_batch_equals_one_by_one(numpy_predictor, images, faces) -> None:
    rects, index, _ = faces
    batch = numpy_predictor.predict_batch(images, rects, index)
    one = np.stack([numpy_predictor.predict(images[i], r) for r, i in zip(rects, index, strict=True)])
    np.testing.assert_array_equal(batch, one)


def test_torch_equals_numpy(numpy_predictor, torch_predictor, images, faces) -> None:
    rects, index, _ = faces
    parts, exact = numpy_predictor.run(images, rects, index)
    t_parts, t_exact = torch_predictor.run(images, rects, index)
    np.testing.assert_array_equal(t_parts.cpu().numpy(), parts)
    np.testing.assert_array_equal(t_exact.cpu().numpy(), exact)  # the unrounded points too, to the bit
    # shuffled, and images given as tensors: the same points face by face
    order = np.random.default_rng(0).permutation(len(rects))[:16]
    tensors = [torch.from_numpy(im.copy()) for im in images]
    shuffled = torch_predictor.predict(tensors, rects[order], index[order]).cpu().numpy()
    np.testing.assert_array_equal(shuffled, parts[order])


@pytest.mark.parametrize("device", DEVICES)
def test_sequential_sum_is_exact_on_this_device(device: str) -> None:
    pick = sequential_sum_for(torch.device(device))
    x = torch.randn(8, 501, 10, device=device) * 100
    loop = x[:, 0].clone()
    for i in range(1, 501):
        loop = loop + x[:, i]
    assert torch.equal(pick(x), loop)


def test_grey_and_rgba_images_like_dlib(numpy_predictor, torch_predictor, reference) -> None:
    rgb = np.asarray(Image.open(DATA / "misc/obama2.jpg").convert("RGB"))
    grey = np.asarray(Image.open(DATA / "misc/obama2.jpg").convert("L"))
    rect = (171, 290, 438, 558)
    assert np.array_equal(numpy_predictor.predict(grey, rect), _dlib_parts(reference, grey, rect))
    assert np.array_equal(torch_predictor.predict([grey], [rect])[0].cpu().numpy(), _dlib_parts(reference, grey, rect))
    # dlib's grey level of a colour pixel is (r + g + b) / 3 in integers
    mean = (rgb.astype(np.int32).sum(axis=2) // 3).astype(np.uint8)
    assert np.array_equal(numpy_predictor.predict(mean, rect), _dlib_parts(reference, rgb, rect))
    # RGBA: dlib's C++ reads it as RGB (alpha ignored); its Python binding refuses it
    rgba = np.asarray(Image.open(DATA / "misc/32bit.png"))
    assert rgba.shape[2] == 4
    expected = _dlib_parts(reference, np.ascontiguousarray(rgba[..., :3]), rect)
    assert np.array_equal(numpy_predictor.predict(rgba, rect), expected)
    assert np.array_equal(torch_predictor.predict([rgba], [rect])[0].cpu().numpy(), expected)
    with pytest.raises(RuntimeError, match="Unsupported image type"):
        reference(rgba, dlib.rectangle(*rect))
    with pytest.raises(ValueError, match="8-bit"):
        numpy_predictor.predict(rgb.astype(np.float32), rect)


def test_faces_across_the_border_and_outside(numpy_predictor, torch_predictor, reference) -> None:
    image = np.asarray(Image.open(DATA / "misc/obama_small.jpg").convert("RGB"))  # 320×240
    h, w = image.shape[:2]
    base = (103, 68, 211, 175)
    rects = [(base[0] + dx, base[1] + dy, base[2] + dx, base[3] + dy) for dx, dy in
             ((-150, 0), (150, 0), (0, -120), (0, 110), (-100, -100), (160, 120), (-104, 0), (109, 65))]
    rects += [(-500, -500, -300, -300), (w + 10, h + 10, w + 200, h + 150), (-50, 20, -1, 80), (5, 5, 5, 5)]
    rects += [(-400, -300, w + 400, h + 300), (10, 10, 9, 9)]  # larger than the image; empty
    expected = np.stack([_dlib_parts(reference, image, r) for r in rects])
    np.testing.assert_array_equal(numpy_predictor.predict_batch([image], np.array(rects)), expected)
    np.testing.assert_array_equal(torch_predictor.predict([image], rects).cpu().numpy(), expected)


def test_random_images_and_rectangles(numpy_predictor, torch_predictor, reference) -> None:
    """Noise and flat images (many equal grey levels: ties at every threshold), odd rectangles."""
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (97, 131, 3), dtype=np.uint8), np.full((60, 80, 3), 77, np.uint8),
              rng.integers(0, 256, (200, 150), dtype=np.uint8)]
    rects, index = [], []
    for i, im in enumerate(images):
        for _ in range(12):
            left, top = rng.integers(-40, im.shape[1]), rng.integers(-40, im.shape[0])
            size = int(rng.integers(1, 160))
            rects.append((left, top, left + size, top + int(size * rng.uniform(0.7, 1.4))))
            index.append(i)
    expected = np.stack([_dlib_parts(reference, images[i], r) for r, i in zip(rects, index, strict=True)])
    np.testing.assert_array_equal(numpy_predictor.predict_batch(images, np.array(rects), np.array(index)), expected)
    np.testing.assert_array_equal(torch_predictor.predict(images, rects, index).cpu().numpy(), expected)


def test_half_pixel_points_round_like_dlib() -> None:
    """A predictor without cascade levels returns its initial shape mapped into the rectangle,
    so hand-made ones probe dlib's rectangle transform on points exactly on a half pixel, where
    its pinv's last-bit errors (not exact arithmetic) decide the rounding."""
    us = np.array([k / 16 for k in range(-8, 25)], np.float32)
    shape = np.stack([us, np.full_like(us, 0.5)], axis=1).reshape(-1)
    empty = (np.zeros((0, 0, 0), np.int64), np.zeros((0, 0, 0), np.int64), np.zeros((0, 0, 0), np.float32))
    zero = ShapePredictorModel(shape, *empty, np.zeros((0, 0, 1, len(shape)), np.float32),
                               np.zeros((0, 0), np.int64), np.zeros((0, 0, 2), np.float32))
    reference, image = _load_dlib(zero), np.zeros((8, 8, 3), np.uint8)
    corners = ((0, 0), (-250, 400), (1001, 3))
    rects = [(left, top, left + w, top + w + 3) for left, top in corners for w in range(1, 41)]
    expected = np.stack([_dlib_parts(reference, image, r) for r in rects])
    m, b = unnormalizing_tforms(np.array(rects))
    width, left = np.array([r[2] - r[0] for r in rects])[:, None], np.array([r[0] for r in rects])[:, None]
    exact_x = np.floor(us * width + left + 0.5)  # what exact arithmetic would round to
    assert (exact_x != expected[:, :, 0]).sum() > 100
    np.testing.assert_array_equal(ShapePredictor(zero).predict_batch([image], np.array(rects)), expected)
    np.testing.assert_array_equal(TorchShapePredictor(zero).predict([image], rects).numpy(), expected)


@pytest.mark.slow
def test_recorded_hog_rectangles_are_current(images) -> None:
    hog = dlib.get_frontal_face_detector()
    for photo, image in zip(PHOTOS, images, strict=True):
        found = sorted((r.left(), r.top(), r.right(), r.bottom()) for r in hog(image, 1))
        assert found == sorted(FACES[photo][0]), photo


# --- chips -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=DEVICES)
def extractor(request) -> TorchChipExtractor:
    return TorchChipExtractor(request.param)


def test_torch_chips_equal_numpy_chips_on_every_face(extractor, images, faces) -> None:
    rects, index, parts = faces
    chips = extractor.chips(images, parts, index).cpu().numpy()
    levels = [plan_chip(p, *images[i].shape[:2]).levels for p, i in zip(parts, index, strict=True)]
    assert 0 in levels and 1 in levels  # both paths: sampled from the image, through the pyramid
    differing = {f"{PHOTOS[i]}#{k}": int((chips[k] != get_face_chip(images[i], p)).sum())
                 for k, (p, i) in enumerate(zip(parts, index, strict=True))
                 if not np.array_equal(chips[k], get_face_chip(images[i], p))}
    assert not differing, f"pixels differing from the numpy chip: {differing}"


def test_torch_chips_deep_pyramids_borders_and_fast_paths(extractor) -> None:
    photo = np.asarray(Image.open(DATA / "people/test/obama1.jpg").convert("RGB"))
    big = np.asarray(Image.fromarray(photo).resize((photo.shape[1] * 3, photo.shape[0] * 3)))
    base = np.array([(857, 321), (799, 324), (646, 336), (711, 330), (782, 445)], np.float64)
    rng = np.random.default_rng(11)
    shapes, index = [], []
    for scale in (3.0, 2.2, 1.0, 0.4, 0.15):  # from three pyramid levels down to none
        for _ in range(3):
            pts = (base - 750) * scale + 750 * (3 if scale > 2 else 1) + rng.integers(-9, 10, (5, 2))
            shapes.append(pts)
            index.append(0 if scale > 2 else 1)
    for shift in ((-800, 0), (0, -400), (1200, 700), (5000, 5000)):  # across the border, outside
        shapes.append(base + shift)
        index.append(1)
    sources = [big, photo]
    kinds = {plan_chip(s, *sources[i].shape[:2]).kind for s, i in zip(shapes, index, strict=True)}
    levels = {plan_chip(s, *sources[i].shape[:2]).levels for s, i in zip(shapes, index, strict=True)}
    assert kinds == {"sample", "empty"} and {0, 1, 2, 3} <= levels
    chips = extractor.chips(sources, np.stack(shapes), np.array(index)).cpu().numpy()
    for k, (s, i) in enumerate(zip(shapes, index, strict=True)):
        np.testing.assert_array_equal(chips[k], get_face_chip(sources[i], s), err_msg=f"shape {k}")
    assert extractor.chips([photo], np.zeros((0, 5, 2))).shape == (0, 150, 150, 3)
    with pytest.raises(ValueError, match="RGB"):
        extractor.chips([photo[..., 0]], base[None])


@pytest.mark.parametrize("rect", [(40.0, 30.0, 189.0, 179.0), (-60.0, 200.0, 89.0, 349.0)])
def test_torch_chip_copy_fast_path(extractor, monkeypatch, rect) -> None:
    """dlib copies an unrotated chip of exactly 150 pixels instead of sampling it. Real landmarks
    never fit the template with an angle of exactly 0, so the chip's placement is forced."""
    from face_engine.port import chip as chip_np

    photo = np.asarray(Image.open(DATA / "misc/obama_small.jpg").convert("RGB"))
    details = chip_np.ChipDetails(rect, 0.0, 150)
    monkeypatch.setattr(chip_np, "face_chip_details", lambda *args: details)
    assert plan_chip(np.zeros((5, 2)), *photo.shape[:2]).kind == "copy"
    got = extractor.chips([photo], np.zeros((1, 5, 2))).cpu().numpy()[0]
    np.testing.assert_array_equal(got, chip_np._extract(photo, details))


# --- sessions --------------------------------------------------------------------------------------


def test_sessions_equal_the_dlib_session(images) -> None:
    from face_engine.sessions.dlib_session import LandmarkSession
    from face_engine.sessions.shape_port_session import PortLandmarkSession, TorchLandmarkSession
    from face_engine.types import BoundingBox

    picked = [PHOTOS.index(p) for p in ("people/test/obama_and_biden.jpg", "people/test/kit_with_rose.jpg",
                                        "misc/obama_partial_face.jpg", "misc/obama-240p.jpg")]
    imgs = [images[i] for i in picked]
    boxes = [[BoundingBox(top=t, right=r + 1, bottom=b + 1, left=left) for left, t, r, b in sum(FACES[PHOTOS[i]], [])]
             for i in picked]
    boxes.insert(1, [])  # an image without faces
    imgs.insert(1, images[0])
    ref = LandmarkSession()
    expected = [([ref.points(ref.predict(im, b)) for b in bs], [ref.chip(im, ref.predict(im, b)) for b in bs])
                for im, bs in zip(imgs, boxes, strict=True)]

    port = PortLandmarkSession()
    shape = port.predict(imgs[0], boxes[0][0])
    assert port.points(shape) == expected[0][0][0]
    np.testing.assert_array_equal(port.chip(imgs[0], shape), expected[0][1][0])
    for session in (port, *(TorchLandmarkSession(d) for d in DEVICES)):
        got = session.align_many(imgs, boxes)
        assert [p for p, _ in got] == [p for p, _ in expected]
        for (_, chips), (_, want) in zip(got, expected, strict=True):
            assert len(chips) == len(want) and all(np.array_equal(a, b) for a, b in zip(chips, want, strict=True))
    points, chips = TorchLandmarkSession("cpu").align_tensors(imgs, boxes)
    assert points == [p for p, _ in expected] and chips.shape == (sum(map(len, boxes)), 150, 150, 3)
    assert TorchLandmarkSession("cpu").align_tensors([imgs[0]], [[]])[1].shape == (0, 150, 150, 3)
