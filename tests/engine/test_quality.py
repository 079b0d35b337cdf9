"""face_engine.quality: the measures on known geometry and on real photos made worse."""

from __future__ import annotations

import io
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from face_engine.quality import (
    DEFAULT_THRESHOLDS,
    REASONS,
    TEMPLATE,
    FaceQuality,
    QualityThresholds,
    assess,
    face_quality,
    outside_fraction,
    pose,
    quality_from,
)

DATA = Path(__file__).resolve().parents[1] / "data"
OBAMA = DATA / "people" / "train" / "obama" / "obama.jpg"


def _face(scale: float = 200.0, angle: float = 0.0, at: tuple[float, float] = (300.0, 300.0),
          nose: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """The chip template's 5 points as a face ``scale`` px wide, turned ``angle`` degrees in the
    image about its centre, placed at ``at``; ``nose`` moves the nose base (in face units)."""
    points = np.array(TEMPLATE, dtype=np.float64) - 0.5
    points[4] += nose
    turn = math.radians(angle)
    rotation = np.array([[math.cos(turn), -math.sin(turn)], [math.sin(turn), math.cos(turn)]])
    return points @ rotation.T * scale + np.array(at)


def _quality(points: np.ndarray, width: int = 600, height: int = 600) -> FaceQuality:
    return quality_from([tuple(p) for p in points], detection_score=1.0, sharpness=50.0,
                        image_width=width, image_height=height)


def test_roll_is_the_angle_of_the_eye_line_and_size_follows_the_scale():
    for angle in (-40.0, -10.0, 0.0, 25.0):
        q = _quality(_face(angle=angle))
        assert q.roll == pytest.approx(angle, abs=0.5)
        assert q.face_size == pytest.approx(200.0, rel=1e-3)  # the inner-face square's side
    assert _quality(_face(scale=60.0)).face_size == pytest.approx(60.0, rel=1e-3)


def test_yaw_and_pitch_follow_the_nose_and_ignore_roll():
    frontal = pose(_face())
    assert abs(frontal[0]) < 1.0 and abs(frontal[1]) < 10.0  # the template is near frontal
    right = pose(_face(nose=(0.15, 0.0)))
    left = pose(_face(nose=(-0.15, 0.0)))
    assert right[0] > 20.0 and left[0] < -20.0 and right[0] == pytest.approx(-left[0], abs=0.5)
    # The same turn, with the photo rotated: yaw stays, roll follows the photo.
    tilted = pose(_face(nose=(0.15, 0.0), angle=30.0))
    assert tilted[0] == pytest.approx(right[0], abs=0.5) and tilted[2] == pytest.approx(30.0, abs=0.5)
    up = pose(_face(nose=(0.0, -0.15)))  # head back: the nose base rises towards the eyes
    down = pose(_face(nose=(0.0, 0.15)))
    assert up[1] > frontal[1] + 20.0 and down[1] < frontal[1] - 20.0
    assert abs(up[0]) < 1.0 and abs(down[0]) < 1.0


def test_cut_off_is_the_share_of_the_face_outside_the_image():
    inside = _quality(_face(at=(300.0, 300.0)))
    assert inside.cut_off == 0.0
    half = _quality(_face(at=(0.0, 300.0)))  # the face's centre on the left edge
    assert half.cut_off == pytest.approx(0.5, abs=0.01)
    corner = _quality(_face(at=(0.0, 0.0)))
    assert corner.cut_off == pytest.approx(0.75, abs=0.01)
    gone = _quality(_face(at=(-500.0, 300.0)))
    assert gone.cut_off == 1.0
    # A square turned 45° with its centre on the edge: half of it outside as well.
    assert outside_fraction([(0.0, 4.0), (1.0, 5.0), (0.0, 6.0), (-1.0, 5.0)], 10, 10) == pytest.approx(0.5)


def test_assess_gives_every_failed_reason_in_the_fixed_order():
    good = FaceQuality(face_size=200, sharpness=50, yaw=5, pitch=-5, roll=2, detection_score=1.5, cut_off=0.0,
                       eye_distance=100)
    assert assess(good, DEFAULT_THRESHOLDS) == ()
    assert assess(good, QualityThresholds()) == ()  # all off
    bad = replace(good, face_size=10, sharpness=0.5, yaw=-80, detection_score=0.1, cut_off=0.5)
    assert assess(bad, DEFAULT_THRESHOLDS) == REASONS
    assert assess(replace(good, pitch=-70), DEFAULT_THRESHOLDS) == ("extreme_pose",)
    assert assess(replace(good, roll=-60), DEFAULT_THRESHOLDS) == ("extreme_pose",)
    assert assess(replace(good, cut_off=0.3, face_size=20), DEFAULT_THRESHOLDS) == ("face_too_small", "cut_off")


@pytest.fixture(scope="module")
def pipeline():
    from face_engine.registry import get_pipeline
    from face_engine.settings import EngineSettings

    engine = get_pipeline(EngineSettings.from_env())
    engine.load()
    return engine


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def _measure(pipeline, image: Image.Image) -> FaceQuality:
    result = pipeline.analyze_bytes([_jpeg(image)])[0]
    assert result.faces, "no face found"
    return face_quality(result.faces[0], result.width, result.height)


def test_real_photo_made_worse(pipeline):
    photo = Image.open(OBAMA).convert("RGB")
    sharp = _measure(pipeline, photo)
    assert assess(sharp, DEFAULT_THRESHOLDS) == ()
    assert sharp.face_size > 150 and abs(sharp.yaw) < 15 and abs(sharp.roll) < 5 and sharp.cut_off == 0.0
    blurred = [_measure(pipeline, photo.filter(ImageFilter.GaussianBlur(r))).sharpness for r in (2, 4, 6)]
    assert sharp.sharpness > blurred[0] > blurred[1] > blurred[2]
    assert blurred[2] < DEFAULT_THRESHOLDS.min_sharpness < sharp.sharpness
    small = _measure(pipeline, photo.resize((photo.width // 7, photo.height // 7), Image.Resampling.LANCZOS))
    assert small.face_size == pytest.approx(sharp.face_size / 7, rel=0.15)
    turned = _measure(pipeline, photo.rotate(40, expand=True, fillcolor=(128, 128, 128)))
    assert turned.roll == pytest.approx(sharp.roll - 40, abs=4)  # rotate() turns counter-clockwise
    edge = _measure(pipeline, photo.crop((0, 0, int(photo.width * 0.6), photo.height)))
    assert 0.1 < edge.cut_off < 0.5
