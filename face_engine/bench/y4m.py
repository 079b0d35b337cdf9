"""Y4M files (YUV4MPEG2, 4:2:0) for Chromium's fake camera (``--use-file-for-fake-video-capture``):
a browser test films a scene made from the project's photos."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from face_engine.bench.scene import PHOTOS_ROOT, Actor, Detect, Entry, FloatArray, SceneRenderer, SceneTruth
from face_engine.types import RGBImage


def rgb_to_i420(rgb: RGBImage) -> bytes:
    """Planar I420 (BT.601 limited range, 2×2 averaged chroma), what a Y4M C420 stream holds."""
    h, w = rgb.shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"I420 needs an even width and height, got {w}×{h}")
    f = rgb.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    cb = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    cr = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255

    def sub(c: FloatArray) -> FloatArray:
        return np.asarray(c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)), np.float32)

    planes = [y, sub(cb), sub(cr)]
    return b"".join(np.clip(p + 0.5, 0, 255).astype(np.uint8).tobytes() for p in planes)


def write_y4m(path: Path | str, frames: Iterable[RGBImage], *, fps: int) -> int:
    """Write RGB frames as a Y4M file for Chromium's ``--use-file-for-fake-video-capture``;
    returns the number of frames."""
    count = 0
    with open(path, "wb") as out:
        for rgb in frames:
            if count == 0:
                h, w = rgb.shape[:2]
                out.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420\n".encode())
            elif rgb.shape[:2] != (h, w):
                raise ValueError("every frame of a Y4M file has the same size")
            out.write(b"FRAME\n" + rgb_to_i420(rgb))
            count += 1
    if count == 0:
        raise ValueError("no frames")
    return count


def build_y4m_clip(path: Path | str, photo: Actor | Path | str, *, width: int = 640, height: int = 480,
                   fps: int = 10, seconds: float = 4, face_height: int = 180, photos_root: Path | str = PHOTOS_ROOT,
                   detect: Detect | None = None) -> SceneTruth:
    """A short clip of one person's face held in view (swaying a little) from the first frame on:
    a fake camera for a browser test. ``photo`` is an Actor or a path under ``photos_root``."""
    actor = photo if isinstance(photo, Actor) else Actor(Path(photo).stem, str(photo))
    slide = 0.5
    # Entering one slide before t=0: the face is at rest on frame 0 and stays past the end.
    entry = Entry(actor, -slide, seconds + slide, "left", face_height, x=0.5, y=0.45, slide=slide)
    renderer = SceneRenderer([entry], width=width, height=height, fps=fps, photos_root=photos_root,
                             detect=detect, frame_count=round(seconds * fps))
    write_y4m(path, renderer.frames(), fps=fps)
    return renderer.truth()
