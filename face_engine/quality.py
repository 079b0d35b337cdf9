"""Quality of one detected face, and the reasons it is too poor to enrol.

Everything here is measured on what the engine already has for a face: the detector's box and
score, the 5 landmarks, and the 150×150 aligned chip. No Django, no I/O.

The 5 landmarks (dlib's ``shape_predictor_5_face_landmarks``) are, in order: the outer and the inner
corner of the eye on the image's right (0, 1), the outer and the inner corner of the eye on the
image's left (2, 3), and the base of the nose (4). ``TEMPLATE`` is where ``dlib.get_face_chip``
puts them in a face of unit size (../shared/docs/dlib-models.md, "The face chip"); its unit square
is the inner face, eyebrows to lower lip, that the chip is normalised to.

What is measured and how:

* ``face_size``: side of that inner-face square in image pixels, from the similarity transform
  that maps ``TEMPLATE`` onto the landmarks. Unlike the detector's box it is not shrunk when the
  box is clipped at the image edge, and HOG and CNN boxes (which differ in size for one face) do
  not change it.
* ``sharpness``: variance of the Laplacian of the chip's luma (smoothed by a σ = 1 px Gaussian: see
  ``sharpness``) over the inner-face square. The chip is 150 px whatever the photo: a face upscaled
  from few pixels is blurred too, which is right.
* ``yaw``/``pitch``/``roll`` in degrees: roll is the eye line's angle; yaw and pitch come from where
  the nose base sits relative to the eyes, under a rigid model of an average head (weak
  perspective, nose base ``NOSE_DEPTH`` eye-distances in front of the eye centres, ``FRONTAL_DROP``
  below them). Five points cannot do better: the angles are estimates (yaw to about ±10°; pitch
  also moves ±15° with the length of a person's nose), good for refusing a face turned far away,
  not for measuring head pose.
* ``cut_off``: fraction of the inner-face square that lies outside the image (the detector's boxes
  are clipped to the image, so the square is the face's unclipped extent).
* ``eye_distance``: pixels between the eye centres (the ICAO/ISO 19794-5 measure of resolution).

Eye openness and occlusion (sunglasses, masks) are not measured: the 5 landmarks are eye
*corners* and the nose base only, and a chip-based guess would need a trained model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from face_engine.port.chip import TEMPLATE_5, similarity_transform
from face_engine.types import Face

Point = tuple[float, float]
FloatArray = npt.NDArray[np.float64]

# dlib.get_face_chip's 5-point template (landmark order), in a face of unit size: the chip code's.
TEMPLATE = TEMPLATE_5
CHIP_PADDING = 0.25
# Depth of the nose base in front of the eye centres, in eye distances (an average adult head:
# eye centres ~62 mm apart, subnasale ~19 mm in front of them). It only scales yaw and pitch.
NOSE_DEPTH = 0.3
# The nose base's drop below the eye line of a face looking at the camera, in eye distances: the
# median over the LFW development images (python -m face_engine.bench.quality), mostly frontal
# press photos. (The chip template's 0.77 is its mean shape's, not a pose: pitch from it read
# +8° on the median LFW face.)
FRONTAL_DROP = 0.724

REASONS = ("face_too_small", "blurry", "extreme_pose", "low_confidence", "cut_off")


@dataclass(frozen=True)
class FaceQuality:
    face_size: float  # px: side of the inner-face square
    sharpness: float  # variance of the Laplacian of the chip's luma (0-255 scale)
    yaw: float  # degrees; > 0: nose towards the image's right
    pitch: float  # degrees; > 0: head tilted back (chin up)
    roll: float  # degrees; > 0: eye line turned clockwise in the image
    detection_score: float
    cut_off: float  # 0..1
    eye_distance: float  # px

    def as_dict(self) -> dict[str, float]:
        return {key: round(value, 4) for key, value in asdict(self).items()}


@dataclass(frozen=True)
class QualityThresholds:
    """A face is refused when any measure is on the wrong side of its limit."""

    min_face_size: float = 0.0
    min_sharpness: float = 0.0
    max_yaw: float = 90.0
    max_pitch: float = 90.0
    max_roll: float = 180.0
    min_detection_score: float = -math.inf
    max_cut_off: float = 1.0


# The service's defaults (config/settings/base.py reads QUALITY_* over them): chosen with
# ``python -m face_engine.bench.quality`` on LFW and the project's photos (docs/performance.md).
DEFAULT_THRESHOLDS = QualityThresholds(
    min_face_size=40.0, min_sharpness=3.0, max_yaw=45.0, max_pitch=45.0, max_roll=30.0,
    min_detection_score=0.25, max_cut_off=0.1,
)


def assess(quality: FaceQuality, thresholds: QualityThresholds) -> tuple[str, ...]:
    """The reasons (in ``REASONS`` order) ``quality`` fails ``thresholds``; empty when it passes."""
    failed = {
        "face_too_small": quality.face_size < thresholds.min_face_size,
        "blurry": quality.sharpness < thresholds.min_sharpness,
        "extreme_pose": (abs(quality.yaw) > thresholds.max_yaw or abs(quality.pitch) > thresholds.max_pitch
                         or abs(quality.roll) > thresholds.max_roll),
        "low_confidence": quality.detection_score < thresholds.min_detection_score,
        "cut_off": quality.cut_off > thresholds.max_cut_off,
    }
    return tuple(reason for reason in REASONS if failed[reason])


def face_quality(face: Face, image_width: int, image_height: int) -> FaceQuality:
    """Measure ``face`` (found in an ``image_width``×``image_height`` image)."""
    return quality_from(face.landmarks, detection_score=face.score, sharpness=sharpness(face.chip),
                        image_width=image_width, image_height=image_height)


def quality_from(landmarks: Sequence[Point], *, detection_score: float, sharpness: float, image_width: int,
                 image_height: int) -> FaceQuality:
    """``face_quality`` from what it is made of (the benchmark keeps these, not the chips)."""
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (5, 2):
        raise ValueError(f"expected the 5 dlib landmarks, got {points.shape}")
    # The chip code's Umeyama transform (scale · rotation, translation): a similarity, so its
    # scale is the square root of its determinant.
    transform, translation = similarity_transform(np.asarray(TEMPLATE, dtype=np.float64), points)
    scale = math.sqrt(abs(float(np.linalg.det(transform))))
    yaw, pitch, roll = pose(points)
    square = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]) @ transform.T + translation
    right_eye, left_eye = points[0:2].mean(axis=0), points[2:4].mean(axis=0)
    return FaceQuality(
        face_size=float(scale),
        sharpness=float(sharpness),
        yaw=yaw,
        pitch=pitch,
        roll=roll,
        detection_score=float(detection_score),
        cut_off=outside_fraction([(float(x), float(y)) for x, y in square], image_width, image_height),
        eye_distance=float(np.linalg.norm(right_eye - left_eye)),
    )


def _nose_offset(points: FloatArray) -> tuple[float, float]:
    """The nose base relative to the eye midpoint, along and across the eye line, in units of the
    (projected) eye distance."""
    right_eye, left_eye = points[0:2].mean(axis=0), points[2:4].mean(axis=0)
    axis = right_eye - left_eye
    distance = float(np.linalg.norm(axis))
    if distance == 0.0:
        return 0.0, 0.0
    along = axis / distance
    across = np.array([-along[1], along[0]])  # image "down" for a level eye line
    offset = points[4] - (right_eye + left_eye) / 2
    return float(offset @ along) / distance, float(offset @ across) / distance


def pose(points: FloatArray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from the 5 landmarks (see the module's notes)."""
    right_eye, left_eye = points[0:2].mean(axis=0), points[2:4].mean(axis=0)
    axis = right_eye - left_eye
    roll = math.degrees(math.atan2(float(axis[1]), float(axis[0])))
    u, v = _nose_offset(points)
    # Turning the head by yaw moves the nose base across by depth·sin(yaw) while the eye distance
    # shrinks by cos(yaw): u = depth·tan(yaw).
    yaw = math.atan2(u, NOSE_DEPTH)
    # Tilting by pitch moves it up by about depth·sin(pitch) (its drop shrinks by cos(pitch), and
    # noses differ in length: read no more into it than its sign and rough size); v is in units of
    # the projected eye distance, v·cos(yaw) in units of the real one.
    pitch = math.atan2(FRONTAL_DROP - v * math.cos(yaw), NOSE_DEPTH)
    return math.degrees(yaw), math.degrees(pitch), roll



def sharpness(chip: npt.NDArray[np.uint8]) -> float:
    """Variance of the Laplacian of the chip's luma, smoothed first by a Gaussian of σ = 1 px
    (a Laplacian of Gaussian), over the inner-face square.

    The smoothing is there because dlib cuts a chip from one level of an image pyramid chosen by
    the face's size: just under a level's limit the chip is sampled from the full image (pixel-scale
    aliasing), just over it from a smoothed level, and the plain Laplacian's variance of one face
    then jumps sevenfold when the photo is re-saved or scaled by 2 %; after the smoothing it moves
    by at most about 1.5×, while real blur still lowers it tenfold."""
    if chip.ndim != 3 or chip.shape[2] != 3:
        raise ValueError(f"expected an H×W×3 chip, got {chip.shape}")
    luma = chip.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    radius = len(GAUSSIAN) // 2
    smooth = _convolve(_convolve(luma, axis=1), axis=0)  # smooth[i, j] is luma[i + radius, j + radius]'s
    size = chip.shape[0]
    lo = round(size * CHIP_PADDING / (1 + 2 * CHIP_PADDING)) - radius
    hi = size - 2 * radius - lo
    inner = smooth[lo - 1 : hi + 1, lo - 1 : hi + 1]
    laplacian = (inner[:-2, 1:-1] + inner[2:, 1:-1] + inner[1:-1, :-2] + inner[1:-1, 2:]
                 - 4.0 * inner[1:-1, 1:-1])
    return float(laplacian.var())


GAUSSIAN = np.exp(-0.5 * np.arange(-3.0, 4.0) ** 2)
GAUSSIAN /= GAUSSIAN.sum()


def _convolve(image: FloatArray, *, axis: int) -> FloatArray:
    """``image`` convolved with ``GAUSSIAN`` along ``axis``, where the kernel fits ("valid")."""
    span = image.shape[axis] - len(GAUSSIAN) + 1
    out: FloatArray = np.zeros(image.shape[:axis] + (span,) + image.shape[axis + 1 :])
    for i, weight in enumerate(GAUSSIAN):
        out += weight * (image[:, i : i + span] if axis == 1 else image[i : i + span, :])
    return out


def outside_fraction(polygon: Sequence[Point], width: int, height: int) -> float:
    """Fraction of a convex ``polygon``'s area outside the image [0, width]×[0, height]."""
    area = _area(polygon)
    if area <= 0.0:
        return 0.0
    inside = list(polygon)
    # Sutherland–Hodgman against each image edge: (axis, bound, keep values below the bound).
    for axis, bound, below in ((0, 0.0, False), (0, float(width), True), (1, 0.0, False), (1, float(height), True)):
        inside = _clip(inside, axis, bound, below)
        if not inside:
            return 1.0
    return float(min(max(1.0 - _area(inside) / area, 0.0), 1.0))


def _clip(polygon: list[Point], axis: int, bound: float, below: bool) -> list[Point]:
    def keep(p: Point) -> bool:
        return p[axis] <= bound if below else p[axis] >= bound

    out: list[Point] = []
    for i, current in enumerate(polygon):
        previous = polygon[i - 1]
        if keep(current):
            if not keep(previous):
                out.append(_cross(previous, current, axis, bound))
            out.append(current)
        elif keep(previous):
            out.append(_cross(previous, current, axis, bound))
    return out


def _cross(a: Point, b: Point, axis: int, bound: float) -> Point:
    t = (bound - a[axis]) / (b[axis] - a[axis])
    return (a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]))


def _area(polygon: Sequence[Point]) -> float:
    return abs(sum(polygon[i - 1][0] * p[1] - p[0] * polygon[i - 1][1] for i, p in enumerate(polygon))) / 2.0
