"""Enrolment jitter (determinism, shape, a real face's embedding) and the LFW study's box mapping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from face_engine.bench.lfw_study import BoxMapping
from face_engine.models.jitter import jitter_chips
from face_engine.types import BoundingBox

DATA = Path(__file__).resolve().parents[1] / "data"


# --- box mapping (the study's CNN → HOG box mapping; not shipped: it did not help) --------------

MAPPING = BoxMapping(dx=0.0055, dy=0.061, sw=1.054, sh=1.053)  # what lfw-dev fits


def test_mapping_moves_and_scales_as_documented() -> None:
    box = BoundingBox(top=100, right=300, bottom=300, left=100)  # 200×200, centre (200, 200)
    mapped = MAPPING.apply(box, 1000, 1000)
    assert (mapped.left + mapped.right) / 2 == pytest.approx(200 + MAPPING.dx * 200, abs=1)
    assert (mapped.top + mapped.bottom) / 2 == pytest.approx(200 + MAPPING.dy * 200, abs=1)
    assert mapped.width == pytest.approx(MAPPING.sw * 200, abs=1)
    assert mapped.height == pytest.approx(MAPPING.sh * 200, abs=1)


def test_mapping_is_relative_to_the_box_size() -> None:
    small = MAPPING.apply(BoundingBox(top=0, right=100, bottom=100, left=0), 10_000, 10_000)
    large = MAPPING.apply(BoundingBox(top=0, right=1000, bottom=1000, left=0), 10_000, 10_000)
    assert large.width == pytest.approx(10 * small.width, abs=10)
    assert large.height == pytest.approx(10 * small.height, abs=10)


@pytest.mark.parametrize("box", [
    BoundingBox(top=-20, right=90, bottom=80, left=-10),  # past the top-left corner
    BoundingBox(top=150, right=260, bottom=255, left=160),  # past the bottom-right corner
    BoundingBox(top=0, right=250, bottom=250, left=0),  # the whole image
])
def test_mapped_box_is_valid_and_clipped(box: BoundingBox) -> None:
    width, height = 250, 240
    mapped = MAPPING.apply(box, width, height)
    assert all(isinstance(v, int) for v in mapped.as_dict().values())
    assert 0 <= mapped.left < mapped.right <= width
    assert 0 <= mapped.top < mapped.bottom <= height


def test_fit_recovers_a_known_mapping() -> None:
    rng = np.random.default_rng(1)
    cnn = [BoundingBox(top=int(t), right=int(left + s), bottom=int(t + s), left=int(left))
           for t, left, s in zip(rng.integers(0, 500, 50), rng.integers(0, 500, 50), rng.integers(80, 400, 50),
                                 strict=True)]
    hog = [MAPPING.apply(b, 10_000, 10_000) for b in cnn]
    fitted = BoxMapping.fit(cnn, hog)
    for name in ("dx", "dy", "sw", "sh"):
        assert getattr(fitted, name) == pytest.approx(getattr(MAPPING, name), abs=0.01)


# --- jitter ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chip() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(150, 150, 3), dtype=np.uint8)


@pytest.mark.parametrize("count", [1, 5, 10])
def test_jitter_count_shape_dtype(chip: np.ndarray, count: int) -> None:
    chips = jitter_chips(chip, count)
    assert len(chips) == count
    assert all(c.shape == (150, 150, 3) and c.dtype == np.uint8 for c in chips)
    assert np.array_equal(chips[0], chip)
    assert chips[0] is not chip


def test_jitter_is_deterministic_per_seed(chip: np.ndarray) -> None:
    a, b = jitter_chips(chip, 6, seed=3), jitter_chips(chip, 6, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    other = jitter_chips(chip, 6, seed=4)
    assert not all(np.array_equal(x, y) for x, y in zip(a[1:], other[1:], strict=True))
    assert all(not np.array_equal(c, chip) for c in a[1:])
    shorter = jitter_chips(chip, 3, seed=3)  # a prefix: enrolling with fewer jitters is a subset
    assert all(np.array_equal(x, y) for x, y in zip(shorter, a[:3], strict=False))


def test_jitter_rejects_bad_input(chip: np.ndarray) -> None:
    with pytest.raises(ValueError):
        jitter_chips(chip, 0)
    with pytest.raises(ValueError):
        jitter_chips(chip[:, :100], 2)
    with pytest.raises(ValueError):
        jitter_chips(chip.astype(np.float32), 2)


def test_jittered_embedding_of_a_real_face_stays_close() -> None:
    from face_engine.pipeline import FacePipeline
    from face_engine.settings import EngineSettings
    from face_engine.types import Runtime

    pytest.importorskip("onnxruntime")
    pipeline = FacePipeline(EngineSettings(runtime=Runtime.ONNX, threads=1))
    image = np.asarray(Image.open(DATA / "people/train/obama/obama.jpg").convert("RGB"))
    face = pipeline.analyze([image])[0].largest
    assert face is not None
    vectors = pipeline.embedder.predict(jitter_chips(face.chip, 10, seed=0))
    jittered = np.mean(vectors, axis=0)
    assert np.allclose(vectors[0], face.embedding, atol=1e-5)
    assert float(np.linalg.norm(jittered - face.embedding)) < 0.2
    assert all(float(np.linalg.norm(v - face.embedding)) < 0.35 for v in vectors)
