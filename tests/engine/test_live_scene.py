"""The synthetic live scene: the video reads back, its truth matches what the engine sees, it is
deterministic, and the default script has the shape the live benchmark needs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest

from face_engine.bench.scene import (
    KIT_SNOW,
    OBAMA_1,
    ROSE,
    Appearance,
    Entry,
    SceneRenderer,
    SceneTruth,
    build_scene,
    default_script,
    load_photo,
)
from face_engine.bench.y4m import build_y4m_clip, write_y4m
from face_engine.pipeline import FacePipeline
from face_engine.registry import get_pipeline
from face_engine.settings import EngineSettings
from face_engine.types import BoundingBox, Embedding, RGBImage

TRAIN = Path(__file__).resolve().parents[1] / "data" / "people" / "train"
FPS, WIDTH, HEIGHT, DURATION = 25, 640, 360, 4.4
# Obama from the left, a gap, then Rose (a small face upscaled: the hardest photo) from the right.
SHORT = [
    Entry(OBAMA_1, 0.32, 1.0, "left", 100, x=0.35, slide=0.4),
    Entry(ROSE, 2.4, 0.8, "right", 96, x=0.62, slide=0.4),
]
GAP_TIMES = (0.12, 2.28, 4.3)  # before anyone, between the two, after the last exit


@pytest.fixture(scope="module")
def pipeline() -> FacePipeline:
    return get_pipeline(EngineSettings.from_env())


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, pipeline: FacePipeline) -> tuple[Path, SceneTruth]:
    path = tmp_path_factory.mktemp("scene") / "short.mp4"
    truth = build_scene(path, script=SHORT, width=WIDTH, height=HEIGHT, fps=FPS,
                        detect=pipeline.detector.predict, duration=DURATION)
    return path, truth


@pytest.fixture(scope="module")
def decoded(built: tuple[Path, SceneTruth]) -> list[RGBImage]:
    with av.open(str(built[0])) as container:
        return [_rgb(f) for f in container.decode(video=0)]


def _rgb(frame: av.VideoFrame) -> RGBImage:
    return np.asarray(frame.to_ndarray(format="rgb24"), np.uint8)


def _iou(a: BoundingBox, b: BoundingBox) -> float:
    inter = BoundingBox(top=max(a.top, b.top), right=min(a.right, b.right),
                        bottom=min(a.bottom, b.bottom), left=max(a.left, b.left)).area
    return inter / (a.area + b.area - inter)


def _train_embeddings(pipeline: FacePipeline, person: str) -> list[Embedding]:
    photos = [load_photo(p) for p in sorted((TRAIN / person).iterdir())]
    return [result.largest.embedding for result in pipeline.analyze(photos) if result.largest is not None]


def test_video_reads_back_with_the_right_shape(built: tuple[Path, SceneTruth]) -> None:
    path, truth = built
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == FPS
        assert (stream.codec_context.width, stream.codec_context.height) == (WIDTH, HEIGHT)
        assert stream.codec_context.name == "h264"
        assert sum(1 for _ in container.decode(video=0)) == truth.frame_count == round(DURATION * FPS)
    assert truth.duration == pytest.approx(DURATION)
    assert SceneTruth.from_json(Path(f"{path}.json").read_text()) == truth


@pytest.mark.parametrize("which", [0, 1])
def test_engine_finds_and_names_the_face_mid_appearance(
    which: int, built: tuple[Path, SceneTruth], decoded: list[RGBImage], pipeline: FacePipeline
) -> None:
    appearance: Appearance = built[1].appearances[which]
    assert appearance.label == SHORT[which].actor.label
    t = round((appearance.visible_from + appearance.visible_until) / 2 * FPS) / FPS
    truth_box = appearance.box_at(t)
    assert truth_box is not None and abs(truth_box.height - SHORT[which].face_height) <= 8
    faces = pipeline.analyze([decoded[round(t * FPS)]])[0].faces
    assert len(faces) == 1
    assert _iou(faces[0].box, truth_box) > 0.5
    distance = min(float(np.linalg.norm(faces[0].embedding - e)) for e in _train_embeddings(pipeline, appearance.label))
    assert distance < 0.6


def test_face_is_wholly_visible_only_inside_its_visible_span(built: tuple[Path, SceneTruth]) -> None:
    for a in built[1].appearances:
        for frame in range(a.first_frame, a.first_frame + len(a.boxes)):
            box = a.box_at(frame / FPS)
            assert box is not None
            inside = box.left >= 0 and box.top >= 0 and box.right <= WIDTH and box.bottom <= HEIGHT
            assert inside == a.fully_visible_at(frame / FPS)
        assert a.enter_start < a.visible_from < a.visible_until < a.exit_end
        assert a.box_at(a.enter_start - 1 / FPS) is None and a.box_at(a.exit_end + 1 / FPS) is None


def test_gap_frames_have_no_face(
    built: tuple[Path, SceneTruth], decoded: list[RGBImage], pipeline: FacePipeline
) -> None:
    for t in GAP_TIMES:
        assert not any(a.box_at(t) for a in built[1].appearances)
        assert pipeline.detector.predict(decoded[round(t * FPS)]) == []


def test_builds_are_deterministic(
    built: tuple[Path, SceneTruth], decoded: list[RGBImage], pipeline: FacePipeline, tmp_path: Path
) -> None:
    again = tmp_path / "again.mp4"
    truth = build_scene(again, script=SHORT, width=WIDTH, height=HEIGHT, fps=FPS,
                        detect=pipeline.detector.predict, duration=DURATION)
    assert truth.to_json() == built[1].to_json() == Path(f"{again}.json").read_text()
    with av.open(str(again)) as container:
        first = _rgb(next(container.decode(video=0)))
    np.testing.assert_array_equal(first, decoded[0])


def test_default_script_has_the_benchmark_shape(pipeline: FacePipeline) -> None:
    truth = SceneRenderer(default_script(), detect=pipeline.detector.predict).truth()
    assert (truth.width, truth.height, truth.fps) == (1280, 720, 25)
    assert 60 <= truth.duration <= 75
    counts = Counter(a.label for a in truth.appearances)
    assert all(counts[p] >= 2 for p in ("obama", "biden", "kit_harington", "rose_leslie"))
    assert {"stranger:lin-manuel-miranda", "stranger:alex_lacamoire"} <= set(counts)
    for a in truth.appearances:
        assert 3.0 <= a.visible_until - a.visible_from <= 6.5
        assert 0.2 <= a.visible_from - a.enter_start <= 0.6  # a slide of about 0.6 s
        heights = [b.height for b in a.boxes]
        assert 105 <= min(heights) and max(heights) <= 190
    pairs = [(a, b) for i, a in enumerate(truth.appearances) for b in truth.appearances[i + 1:]
             if a.visible_from < b.visible_until and b.visible_from < a.visible_until]
    assert len(pairs) >= 2
    assert any(a.known != b.known for a, b in pairs)  # a stranger beside a known person
    for a, b in pairs:  # entering at different moments, spatially apart
        assert a.enter_start != b.enter_start
        t = max(a.visible_from, b.visible_from)
        box_a, box_b = a.box_at(t), b.box_at(t)
        assert box_a is not None and box_b is not None and _iou(box_a, box_b) == 0
    # Gaps of at least a second with nobody on stage, and everyone comes back.
    on_stage = np.zeros(truth.frame_count, bool)
    for a in truth.appearances:
        on_stage[a.first_frame:a.first_frame + len(a.boxes)] = True
    runs = np.diff(np.flatnonzero(np.diff(np.r_[1, on_stage.astype(int), 1])))[::2]
    assert (runs >= FPS).sum() >= 8


def test_write_y4m_header_and_frame_sizes(tmp_path: Path) -> None:
    frames = [np.full((48, 64, 3), v, np.uint8) for v in (0, 255, 128)]
    path = tmp_path / "clip.y4m"
    assert write_y4m(path, frames, fps=10) == 3
    data = path.read_bytes()
    header = b"YUV4MPEG2 W64 H48 F10:1 Ip A1:1 C420\n"
    frame_size = 64 * 48 * 3 // 2 + 6
    assert data.startswith(header) and len(data) == len(header) + 3 * frame_size
    black, white = (data[len(header) + i * frame_size:][:frame_size] for i in (0, 1))
    assert black[:6] == b"FRAME\n" and black[6] == 16 and white[6] == 235  # limited-range luma
    assert black[6 + 64 * 48] == 128  # neutral chroma
    with pytest.raises(ValueError):
        write_y4m(tmp_path / "odd.y4m", [np.zeros((47, 64, 3), np.uint8)], fps=10)


def test_y4m_clip_shows_the_face_from_the_first_frame(tmp_path: Path, pipeline: FacePipeline) -> None:
    path = tmp_path / "kit.y4m"
    truth = build_y4m_clip(path, KIT_SNOW, seconds=2, detect=pipeline.detector.predict)
    assert path.stat().st_size == len(b"YUV4MPEG2 W640 H480 F10:1 Ip A1:1 C420\n") + 20 * (640 * 480 * 3 // 2 + 6)
    (appearance,) = truth.appearances
    assert appearance.fully_visible_at(0.0) and appearance.fully_visible_at(1.9)
    with av.open(str(path)) as container:
        first = _rgb(next(container.decode(video=0)))
    faces = pipeline.detector.predict(first)
    truth_box = appearance.box_at(0.0)
    assert len(faces) == 1 and truth_box is not None and _iou(faces[0].box, truth_box) > 0.5
