"""A synthetic live-camera scene built from the project's own photos, with exact ground truth.

People slide into a textured "room", sway a little, and leave; the truth records, per appearance,
the face box on every frame and when the face is first and last wholly inside the frame (the
reference for "time to name"). Known people are shown from photos that are NOT their enrolment
photos (byte-identical and resized copies of those are avoided), so recognising them is honest.

Build the default scene from a shell::

    python -c "from face_engine.bench.scene import build_default; build_default('/tmp/scene720.mp4')"
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np
import numpy.typing as npt
from PIL import Image

from face_engine.decode import decode_image
from face_engine.types import BoundingBox, Detection, RGBImage

PHOTOS_ROOT = Path(__file__).resolve().parents[2] / "tests" / "data"
FaceChoice = Literal["largest", "left", "right"]
Side = Literal["left", "right"]
Detect = Callable[[RGBImage], list[Detection]]
FloatArray = npt.NDArray[np.float32]

SEED = 20240611
# Head-and-shoulders crop around the face box, in face widths / heights (2.4 × 2.6 face boxes).
CROP_SIDE, CROP_ABOVE, CROP_BELOW = 1.2, 0.75, 0.85


@dataclass(frozen=True)
class Actor:
    """A person as one photo shows them: ``label`` is the enrolment folder's name, or
    ``stranger:<name>`` for someone the benchmark never enrols; ``face`` picks among the photo's
    two largest faces (a two-person photo) by position."""

    label: str
    photo: str  # relative to the photos root
    face: FaceChoice = "largest"


@dataclass(frozen=True)
class Entry:
    """One appearance in a script: slide in from ``side`` over ``slide`` s, stay ``stay`` s with
    the face centre near (x, y) (fractions of the frame), slide back out the same way."""

    actor: Actor
    enter_at: float
    stay: float
    side: Side
    face_height: int
    x: float = 0.5
    y: float = 0.42
    mirror: bool = False
    slide: float = 0.6


@dataclass
class Appearance:
    """Ground truth of one appearance. ``boxes[i]`` is the (unclipped) face box on frame
    ``first_frame + i``; times are video times of frames (frame index / fps)."""

    label: str
    photo: str
    enter_start: float
    visible_from: float
    visible_until: float
    exit_end: float
    first_frame: int
    fps: int
    boxes: list[BoundingBox] = field(repr=False)

    @property
    def known(self) -> bool:
        return not self.label.startswith("stranger:")

    def box_at(self, t: float) -> BoundingBox | None:
        """The face box on the frame shown at video time ``t``; None when the actor is off stage."""
        i = round(t * self.fps) - self.first_frame
        return self.boxes[i] if 0 <= i < len(self.boxes) else None

    def fully_visible_at(self, t: float) -> bool:
        return self.visible_from - 1e-9 <= t <= self.visible_until + 1e-9


@dataclass
class SceneTruth:
    fps: int
    width: int
    height: int
    frame_count: int
    appearances: list[Appearance]

    @property
    def duration(self) -> float:
        return self.frame_count / self.fps

    def visible_at(self, t: float) -> list[Appearance]:
        """The appearances whose face is wholly inside the frame at ``t``."""
        return [a for a in self.appearances if a.fully_visible_at(t)]

    def to_json(self) -> str:
        """One appearance a line (boxes as [top, right, bottom, left]): diffable, yet compact."""
        rows = [json.dumps({"label": a.label, "photo": a.photo, **{k: getattr(a, k) for k in _TIME_FIELDS},
                            "first_frame": a.first_frame,
                            "boxes": [[b.top, b.right, b.bottom, b.left] for b in a.boxes]})
                for a in self.appearances]
        head = json.dumps({"fps": self.fps, "width": self.width, "height": self.height,
                           "frame_count": self.frame_count, "duration": self.duration})
        return head[:-1] + ', "appearances": [\n' + ",\n".join(rows) + "\n]}\n"

    @classmethod
    def from_json(cls, text: str) -> SceneTruth:
        doc = json.loads(text)
        fps = int(doc["fps"])
        appearances = [
            Appearance(label=r["label"], photo=r["photo"], first_frame=int(r["first_frame"]), fps=fps,
                       boxes=[BoundingBox(*map(int, b)) for b in r["boxes"]],
                       **{k: float(r[k]) for k in _TIME_FIELDS})
            for r in doc["appearances"]
        ]
        return cls(fps=fps, width=int(doc["width"]), height=int(doc["height"]),
                   frame_count=int(doc["frame_count"]), appearances=appearances)


_TIME_FIELDS = ("enter_start", "visible_from", "visible_until", "exit_end")

OBAMA_1 = Actor("obama", "people/test/obama1.jpg")
OBAMA_3 = Actor("obama", "misc/obama3.jpg")
OBAMA_WITH_BIDEN = Actor("obama", "people/test/obama_and_biden.jpg", "right")
BIDEN = Actor("biden", "people/test/obama_and_biden.jpg", "left")  # misc/biden.jpg IS train/biden/biden.jpg
KIT_SNOW = Actor("kit_harington", "people/test/johnsnow_test1.jpg")
KIT_WITH_ROSE = Actor("kit_harington", "people/test/kit_with_rose.jpg", "right")
ROSE = Actor("rose_leslie", "people/test/kit_with_rose.jpg", "left")
LIN = Actor("stranger:lin-manuel-miranda", "misc/lin-manuel-miranda.png")
ALEX = Actor("stranger:alex_lacamoire", "people/test/alex_lacamoire1.jpg")


def default_script() -> list[Entry]:
    """About 69 s: single people, gaps, returns, pairs that overlap in time, strangers alone and
    beside a known person. Every known person appears at least twice."""
    return [
        Entry(OBAMA_1, 1.0, 4.0, "left", 160, x=0.36),
        Entry(KIT_SNOW, 7.5, 4.0, "right", 150, x=0.62),
        Entry(BIDEN, 14.0, 4.5, "left", 140, x=0.42),
        Entry(LIN, 21.0, 3.5, "right", 170, x=0.55),
        Entry(ROSE, 27.0, 5.0, "left", 115, x=0.28, y=0.45),
        Entry(KIT_WITH_ROSE, 28.5, 4.5, "right", 130, x=0.72, y=0.40),
        Entry(OBAMA_3, 35.5, 4.0, "right", 175, x=0.58),
        Entry(ALEX, 42.0, 5.0, "left", 150, x=0.27),
        Entry(BIDEN, 43.0, 4.0, "right", 125, x=0.73, y=0.46, mirror=True),
        Entry(ROSE, 49.5, 4.0, "right", 120, x=0.6, mirror=True),
        Entry(OBAMA_WITH_BIDEN, 56.0, 5.0, "left", 145, x=0.3),
        Entry(LIN, 57.2, 4.0, "right", 135, x=0.7, y=0.45, mirror=True),
        Entry(KIT_SNOW, 63.5, 3.5, "left", 165, x=0.45, mirror=True),
    ]


def default_detect() -> Detect:
    """The engine's own detector (loaded once per process by the registry)."""
    from face_engine.registry import get_pipeline
    from face_engine.settings import EngineSettings

    return get_pipeline(EngineSettings.from_env()).detector.predict


def load_photo(path: Path) -> RGBImage:
    """Decoded the way the engine decodes uploads, so boxes are in the same pixels (EXIF upright)."""
    return decode_image(path.read_bytes(), max_bytes=1 << 30, max_pixels=1 << 30)


def pick_face(detections: Sequence[Detection], choice: FaceChoice) -> BoundingBox:
    """The largest face, or the left/right one of the two largest (a weak background hit in a
    two-person photo must not be taken for the right-hand person)."""
    if not detections:
        raise ValueError("no face in the photo")
    ranked = sorted(detections, key=lambda d: d.box.area, reverse=True)
    if choice == "largest":
        return ranked[0].box
    pair = sorted(ranked[:2], key=lambda d: d.box.left)
    return pair[0].box if choice == "left" else pair[-1].box


def _smoothstep(u: npt.NDArray[np.float64] | float) -> Any:
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3 - 2 * u)


@dataclass
class _Sprite:
    """A feathered head-and-shoulders crop at the entry's rest scale, and its face box in it."""

    image: Image.Image  # RGBA
    face: tuple[float, float, float, float]  # top, right, bottom, left in sprite pixels

    @classmethod
    def make(cls, photo: RGBImage, box: BoundingBox, face_height: int, mirror: bool) -> _Sprite:
        h, w = photo.shape[:2]
        cx = (box.left + box.right) / 2
        left = max(0, math.floor(cx - CROP_SIDE * box.width))
        right = min(w, math.ceil(cx + CROP_SIDE * box.width))
        top = max(0, math.floor(box.top - CROP_ABOVE * box.height))
        bottom = min(h, math.ceil(box.bottom + CROP_BELOW * box.height))
        crop = photo[top:bottom, left:right]
        f_top, f_bottom = box.top - top, box.bottom - top
        f_left, f_right = box.left - left, box.right - left
        if mirror:
            crop = crop[:, ::-1]
            f_left, f_right = crop.shape[1] - f_right, crop.shape[1] - f_left
        scale = face_height / box.height
        sw, sh = max(2, round(crop.shape[1] * scale)), max(2, round(crop.shape[0] * scale))
        rgb = np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize((sw, sh), Image.Resampling.LANCZOS))
        # Feathered edge: a ramp over 15 % of the short side, so no hard rectangle (which a
        # detector or the codec would treat as structure) surrounds the person.
        feather = 0.15 * min(sw, sh)
        ramp_x = _smoothstep(np.minimum(np.arange(sw), sw - 1 - np.arange(sw)) / feather)
        ramp_y = _smoothstep(np.minimum(np.arange(sh), sh - 1 - np.arange(sh)) / feather)
        alpha = (np.outer(ramp_y, ramp_x) * 255).round().astype(np.uint8)
        rgba = np.dstack([rgb, alpha])
        sx, sy = sw / crop.shape[1], sh / crop.shape[0]
        return cls(Image.fromarray(rgba, "RGBA"), (f_top * sy, f_right * sx, f_bottom * sy, f_left * sx))


class _Track:
    """Where one entry's sprite is on every frame: slide, rest with sway, slide back."""

    def __init__(self, entry: Entry, sprite: _Sprite, index: int, width: int, height: int, fps: int) -> None:
        self.entry, self.sprite, self.fps = entry, sprite, fps
        rng = np.random.default_rng([SEED, index])
        # Small natural motion: a few pixels of sway and bob, ±3 % breathing of scale.
        self.freq = rng.uniform(0.2, 0.45, size=3)
        self.phase = rng.uniform(0, 2 * math.pi, size=3)
        self.amp = (rng.uniform(3.0, 6.0), rng.uniform(1.5, 3.0), rng.uniform(0.02, 0.035))
        sw, _ = sprite.image.size
        fcx = (sprite.face[1] + sprite.face[3]) / 2
        self.rest = (entry.x * width, entry.y * height)
        # Off stage the sprite's whole width (plus the sway) is just outside the edge.
        margin = self.amp[0] * 1.1 + 2
        self.off_x = -(sw * 1.04 - fcx) - margin if entry.side == "left" else width + fcx * 1.04 + margin
        self.first = round(entry.enter_at * fps)
        self.last = self.first + round((2 * entry.slide + entry.stay) * fps)

    def place(self, frame: int) -> tuple[int, int, int, int]:
        """(sprite left, top, width, height) on ``frame``."""
        e, t, u = self.entry, frame / self.fps, (frame - self.first) / self.fps
        # Eased slide in, rest, eased slide out: fraction of the way from off stage to the rest spot.
        p = float(_smoothstep(u / e.slide) - _smoothstep((u - e.slide - e.stay) / e.slide))
        wave = np.sin(2 * math.pi * self.freq * t + self.phase)
        k = 1.0 + self.amp[2] * float(wave[2])
        cx = self.off_x + (self.rest[0] - self.off_x) * p + self.amp[0] * float(wave[0])
        cy = self.rest[1] + self.amp[1] * float(wave[1])
        sw0, sh0 = self.sprite.image.size
        sw, sh = round(sw0 * k), round(sh0 * k)
        f = self.sprite.face
        left = round(cx - (f[1] + f[3]) / 2 * sw / sw0)
        top = round(cy - (f[0] + f[2]) / 2 * sh / sh0)
        return left, top, sw, sh

    def box(self, frame: int) -> BoundingBox:
        left, top, sw, sh = self.place(frame)
        sw0, sh0 = self.sprite.image.size
        f, sx, sy = self.sprite.face, sw / sw0, sh / sh0
        return BoundingBox(top=top + round(f[0] * sy), right=left + round(f[1] * sx),
                           bottom=top + round(f[2] * sy), left=left + round(f[3] * sx))

    def appearance(self, width: int, height: int) -> Appearance:
        boxes = [self.box(i) for i in range(self.first, self.last + 1)]
        inside = [i for i, b in enumerate(boxes)
                  if b.left >= 0 and b.top >= 0 and b.right <= width and b.bottom <= height]
        if not inside:
            raise ValueError(f"{self.entry.actor.label} at {self.entry.enter_at}s never wholly in the frame")
        fps = self.fps
        return Appearance(label=self.entry.actor.label, photo=self.entry.actor.photo,
                          enter_start=self.first / fps, visible_from=(self.first + inside[0]) / fps,
                          visible_until=(self.first + inside[-1]) / fps, exit_end=self.last / fps,
                          first_frame=self.first, fps=fps, boxes=boxes)


def room_background(width: int, height: int, *, seed: int = SEED) -> FloatArray:
    """A plain room: lit wall, window, door, picture frame, floor; blotchy texture and grain so
    the codec has real content to spend bits on. No face-like structure anywhere."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    yn, xn = ys / height, xs / width
    light = 1.0 - 0.25 * xn - 0.12 * yn  # daylight from the window on the left
    img = np.empty((height, width, 3), np.float32)
    img[...] = np.array([196, 184, 164], np.float32) * light[..., None]
    floor = yn > 0.8
    img[floor] = np.array([120, 92, 66], np.float32) * (0.8 + 0.3 * yn[floor][:, None])
    img[(yn > 0.79) & (yn <= 0.8)] = (235, 230, 220)  # skirting board
    img[floor & ((ys.astype(int) % max(4, height // 40)) == 0)] *= 0.85  # floorboards

    def rect(x0: float, y0: float, x1: float, y1: float) -> tuple[slice, slice]:
        return slice(int(y0 * height), int(y1 * height)), slice(int(x0 * width), int(x1 * width))

    img[rect(0.04, 0.10, 0.20, 0.55)] = (232, 240, 248)  # window
    img[rect(0.115, 0.10, 0.125, 0.55)] = img[rect(0.04, 0.32, 0.20, 0.33)] = (150, 150, 150)
    img[rect(0.86, 0.18, 0.97, 0.80)] = (130, 100, 76)  # door
    img[rect(0.945, 0.48, 0.955, 0.51)] = (210, 190, 120)
    img[rect(0.45, 0.08, 0.56, 0.20)] = (70, 60, 50)  # picture frame
    img[rect(0.46, 0.10, 0.55, 0.18)] = (96, 130, 150)
    coarse = rng.normal(0, 6, size=(height // 24 + 2, width // 24 + 2, 1)).astype(np.float32)
    blotch = np.asarray(Image.fromarray(coarse[..., 0]).resize((width, height), Image.Resampling.BILINEAR))
    img += blotch[..., None] + rng.normal(0, 2.5, size=img.shape).astype(np.float32)
    return img


class SceneRenderer:
    """Renders a script's frames and plans its truth; photos are detected once per build."""

    def __init__(self, script: Sequence[Entry], *, width: int = 1280, height: int = 720, fps: int = 25,
                 photos_root: Path | str = PHOTOS_ROOT, detect: Detect | None = None,
                 frame_count: int | None = None) -> None:
        self.width, self.height, self.fps = width, height, fps
        root, detect = Path(photos_root), detect or default_detect()
        seen: dict[str, tuple[RGBImage, list[Detection]]] = {}  # each photo decoded and detected once
        self.tracks: list[_Track] = []
        for i, entry in enumerate(script):
            if entry.actor.photo not in seen:
                photo = load_photo(root / entry.actor.photo)
                seen[entry.actor.photo] = photo, detect(photo)
            photo, found = seen[entry.actor.photo]
            sprite = _Sprite.make(photo, pick_face(found, entry.actor.face), entry.face_height, entry.mirror)
            self.tracks.append(_Track(entry, sprite, i, width, height, fps))
        self.frame_count = frame_count or max(t.last for t in self.tracks) + 1 + round(1.3 * fps)
        background = room_background(width, height)
        grain = np.random.default_rng(SEED + 1)
        # Four grain variants cycled: sensor noise that changes per frame, at no per-frame cost.
        self._backgrounds = [np.clip(background + grain.normal(0, 1.2, background.shape), 0, 255).astype(np.uint8)
                             for _ in range(4)]

    def truth(self) -> SceneTruth:
        return SceneTruth(fps=self.fps, width=self.width, height=self.height, frame_count=self.frame_count,
                          appearances=[t.appearance(self.width, self.height) for t in self.tracks])

    def frame(self, index: int) -> RGBImage:
        out = self._backgrounds[index % len(self._backgrounds)].copy()
        for track in self.tracks:
            if track.first <= index <= track.last:
                self._paste(out, track, index)
        return out

    def frames(self) -> Iterable[RGBImage]:
        return (self.frame(i) for i in range(self.frame_count))

    def _paste(self, out: RGBImage, track: _Track, index: int) -> None:
        left, top, sw, sh = track.place(index)
        x0, y0 = max(0, left), max(0, top)
        x1, y1 = min(self.width, left + sw), min(self.height, top + sh)
        if x0 >= x1 or y0 >= y1:
            return
        image = track.sprite.image
        image = image if (sw, sh) == image.size else image.resize((sw, sh), Image.Resampling.BILINEAR)
        sprite = np.asarray(image)[y0 - top:y1 - top, x0 - left:x1 - left].astype(np.float32)
        alpha = sprite[..., 3:] / 255.0
        region = out[y0:y1, x0:x1].astype(np.float32)
        out[y0:y1, x0:x1] = (region + (sprite[..., :3] - region) * alpha + 0.5).astype(np.uint8)


def encode_video(out_path: Path | str, frames: Iterable[RGBImage], *, width: int, height: int, fps: int,
                 codec: str = "libx264", crf: int = 23, preset: str = "veryfast") -> None:
    """H.264 yuv420p with a key frame every second (a late joiner waits at most 1 s)."""
    options = {"crf": str(crf), "preset": preset,
               "x264-params": f"keyint={fps}:min-keyint={fps}:scenecut=0"} if codec == "libx264" else {}
    with av.open(str(out_path), "w") as container:
        stream = container.add_stream(codec, rate=fps, options=options)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = fps
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def build_scene(out_path: Path | str, *, script: Sequence[Entry] | None = None, width: int = 1280,
                height: int = 720, fps: int = 25, photos_root: Path | str = PHOTOS_ROOT, codec: str = "libx264",
                detect: Detect | None = None, duration: float | None = None) -> SceneTruth:
    """Render ``script`` (default: :func:`default_script`) to ``out_path`` and write its truth to
    ``<out_path>.json``; ``detect`` defaults to the engine's detector, ``duration`` to 1.3 s after
    the last exit."""
    frame_count = round(duration * fps) if duration else None
    renderer = SceneRenderer(script if script is not None else default_script(), width=width, height=height,
                             fps=fps, photos_root=photos_root, detect=detect, frame_count=frame_count)
    truth = renderer.truth()
    encode_video(out_path, renderer.frames(), width=width, height=height, fps=fps, codec=codec)
    Path(f"{out_path}.json").write_text(truth.to_json())
    return truth


def build_default(out_path: Path | str = "/tmp/scene720.mp4") -> SceneTruth:
    """Build the default 1280×720 scene and print its size, build time and appearances."""
    start = time.perf_counter()
    truth = build_scene(out_path)
    print(f"{out_path}: {Path(out_path).stat().st_size / 1e6:.2f} MB, {truth.duration:.2f} s, "
          f"{truth.frame_count} frames, built in {time.perf_counter() - start:.1f} s")
    for a in truth.appearances:
        print(f"  {a.label:30s} enter {a.enter_start:6.2f}  visible {a.visible_from:6.2f} – {a.visible_until:6.2f}"
              f"  gone {a.exit_end:6.2f}  {a.photo}")
    return truth
