"""Quality gate study: what each enrolment threshold refuses, and what it does to LFW accuracy.

    python -m face_engine.bench.quality [--root ../shared/lfw-dev] [--photos tests/data ../shared/faces]
                                        [--cache var/bench/quality-lfw.npz] [--refresh]

Every LFW development image (and every project photo) goes through ``FacePipeline.analyze_bytes``
as an upload does; its largest face gets a ``FaceQuality``. For each threshold alone (the others
off), then for the defaults together, the table gives the share of LFW images and of project
photos refused, and LFW pair accuracy at the match threshold: "gate off" over all 2,200 pairs (a
pair with a face-less image counts as "different", as in ``face_engine.bench.lfw``), "gate on" over
the pairs whose two images both pass, and "faces" over the pairs whose two images have a face at
all (so a rise is not just the face-less pairs leaving). Embeddings are plain (no enrolment
jitter), as in ``face_engine.bench.lfw``.

The engine's results for LFW are cached (landmarks, box, score, sharpness, embedding) in
``--cache`` under var/ (git-ignored): the first run takes minutes on 2 cores, later ones seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import numpy.typing as npt

from face_engine.bench.lfw import pair_accuracy, read_pairs
from face_engine.quality import (
    DEFAULT_THRESHOLDS,
    FaceQuality,
    QualityThresholds,
    assess,
    quality_from,
    sharpness,
)
from face_engine.settings import EngineSettings
from face_engine.types import ImageError

REPO = Path(__file__).resolve().parents[2]
DEFAULT_ROOT = REPO.parent / "shared" / "lfw-dev"
DEFAULT_PHOTOS = (REPO / "tests" / "data", REPO.parent / "shared" / "faces")
DEFAULT_CACHE = REPO / "var" / "bench" / "quality-lfw.npz"
BATCH = 64
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png"}

OFF = QualityThresholds()
# threshold field → values tried alone
SWEEP: dict[str, tuple[float, ...]] = {
    "min_face_size": (40.0, 60.0, 80.0, 100.0),
    "min_sharpness": (2.0, 3.0, 5.0, 8.0, 12.0),
    "max_yaw": (20.0, 30.0, 40.0, 45.0, 50.0),
    "max_pitch": (20.0, 30.0, 40.0, 45.0, 50.0),
    "max_roll": (15.0, 30.0, 45.0),
    "min_detection_score": (0.25, 0.5, 0.75, 1.0),
    "max_cut_off": (0.05, 0.1, 0.2),
}
# Other combinations shown next to the defaults.
COMBINATIONS: dict[str, QualityThresholds] = {
    "looser (yaw 50, pitch 50)": replace(DEFAULT_THRESHOLDS, max_yaw=50.0, max_pitch=50.0),
    "stricter (sharpness 5, yaw 40, pitch 40, score 0.5)": replace(
        DEFAULT_THRESHOLDS, min_sharpness=5.0, max_yaw=40.0, max_pitch=40.0, min_detection_score=0.5),
    "strict (sharpness 8, yaw 30, pitch 30, score 1)": replace(
        DEFAULT_THRESHOLDS, min_sharpness=8.0, max_yaw=30.0, max_pitch=30.0, min_detection_score=1.0),
}


@dataclass(frozen=True)
class Raw:
    """What the engine found for one image's largest face: enough to recompute its quality (the
    cache keeps this, so a change to the pose or cut-off geometry needs no new engine run)."""

    landmarks: tuple[tuple[float, float], ...]
    detection_score: float
    sharpness: float
    width: int
    height: int
    embedding: npt.NDArray[np.float32]

    def quality(self) -> FaceQuality:
        return quality_from(self.landmarks, detection_score=self.detection_score, sharpness=self.sharpness,
                            image_width=self.width, image_height=self.height)


@dataclass(frozen=True)
class Measured:
    """Each image's largest face (None: no face, or not an image)."""

    names: list[str]
    raw: list[Raw | None]

    @cached_property
    def quality(self) -> list[FaceQuality | None]:
        return [r.quality() if r is not None else None for r in self.raw]

    @property
    def embeddings(self) -> list[npt.NDArray[np.float32] | None]:
        return [r.embedding if r is not None else None for r in self.raw]


def measure(blobs: Sequence[bytes], names: Sequence[str], *, log_every: int = 0) -> Measured:
    from face_engine.registry import get_pipeline

    pipeline = get_pipeline(EngineSettings.from_env())
    pipeline.load()
    raw: list[Raw | None] = []
    start = time.perf_counter()
    for first in range(0, len(blobs), BATCH):
        for result in pipeline.analyze_bytes(blobs[first : first + BATCH]):
            face = None if isinstance(result, ImageError) else result.largest
            if face is None or isinstance(result, ImageError):
                raw.append(None)
                continue
            raw.append(Raw(face.landmarks, face.score, sharpness(face.chip), result.width, result.height,
                           face.embedding))
        if log_every and (first // BATCH) % log_every == 0:
            print(f"  {min(first + BATCH, len(blobs))}/{len(blobs)} images, "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
    return Measured(list(names), raw)


def save(measured: Measured, path: Path, key: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    present = np.array([r is not None for r in measured.raw])
    empty = Raw(((0.0, 0.0),) * 5, 0.0, 0.0, 0, 0, np.zeros(128, np.float32))
    rows = [r if r is not None else empty for r in measured.raw]
    np.savez(path, key=np.array(key), names=np.array(measured.names), present=present,
             landmarks=np.array([r.landmarks for r in rows], dtype=np.float64),
             numbers=np.array([[r.detection_score, r.sharpness, r.width, r.height] for r in rows], dtype=np.float64),
             embeddings=np.stack([r.embedding for r in rows]))


def load(path: Path, key: str) -> Measured | None:
    if not path.exists():
        return None
    data = np.load(path, allow_pickle=False)
    if str(data["key"]) != key:
        return None
    raw: list[Raw | None] = []
    for ok, points, numbers, vector in zip(data["present"], data["landmarks"], data["numbers"], data["embeddings"],
                                           strict=True):
        if not ok:
            raw.append(None)
            continue
        score, sharp, width, height = (float(v) for v in numbers)
        raw.append(Raw(tuple((float(x), float(y)) for x, y in points), score, sharp, int(width), int(height),
                       vector.astype(np.float32)))
    return Measured([str(n) for n in data["names"]], raw)


def cache_key(names: Sequence[str]) -> str:
    """The engine's identity and the image list: a change of either re-measures."""
    settings = EngineSettings.from_env()
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
    return f"{settings.detector.value}/{settings.min_face_size}/{digest}/sharpness-log1"


def photos(roots: Sequence[Path]) -> list[tuple[str, bytes]]:
    """Project photos, each distinct file once (tests/data copies ../shared/faces)."""
    seen: set[str] = set()
    found: list[tuple[str, bytes]] = []
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES):
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            if digest not in seen:
                seen.add(digest)
                found.append((os.path.relpath(path, REPO), data))
    return found


@dataclass(frozen=True)
class Row:
    label: str
    lfw_refused: float  # share of LFW images with a face that the gate refuses
    photos_refused: int
    pairs_kept: int
    accuracy_on: float
    accuracy_dropped: float  # over the pairs the gate drops: below accuracy_on when it drops hard ones
    accuracy_faces: float


class Study:
    def __init__(self, lfw: Measured, pairs: list[tuple[str, str, bool]], project: Measured,
                 match_threshold: float) -> None:
        self.lfw, self.project, self.threshold = lfw, project, match_threshold
        index = {name: i for i, name in enumerate(lfw.names)}
        self.left = np.array([index[x] for x, _, _ in pairs])
        self.right = np.array([index[y] for _, y, _ in pairs])
        self.same = np.array([s for _, _, s in pairs])
        found = np.array([e is not None for e in lfw.embeddings])
        vectors = np.stack([e if e is not None else np.zeros(128, np.float32) for e in lfw.embeddings])
        self.distances = np.where(found[self.left] & found[self.right],
                                  np.linalg.norm(vectors[self.left] - vectors[self.right], axis=1), np.inf)
        self.found = found
        self.with_faces = found[self.left] & found[self.right]

    def accuracy_off(self) -> float:
        return pair_accuracy(self.distances, self.same, self.threshold)

    def passing(self, measured: Measured, thresholds: QualityThresholds) -> npt.NDArray[np.bool_]:
        return np.array([q is not None and not assess(q, thresholds) for q in measured.quality])

    def row(self, label: str, thresholds: QualityThresholds) -> Row:
        ok = self.passing(self.lfw, thresholds)
        kept = ok[self.left] & ok[self.right]
        photos_ok = self.passing(self.project, thresholds)
        photos_found = np.array([q is not None for q in self.project.quality])
        return Row(
            label=label,
            lfw_refused=float(np.mean(~ok[self.found])),
            photos_refused=int(np.sum(photos_found & ~photos_ok)),
            pairs_kept=int(kept.sum()),
            accuracy_on=pair_accuracy(self.distances[kept], self.same[kept], self.threshold),
            accuracy_dropped=pair_accuracy(self.distances[~kept], self.same[~kept], self.threshold)
            if (~kept).any() else float("nan"),  # printed as "-"
            accuracy_faces=pair_accuracy(self.distances[self.with_faces], self.same[self.with_faces],
                                         self.threshold),
        )


def distribution(measured: Measured) -> list[str]:
    qualities = [q for q in measured.quality if q is not None]
    lines = [f"| measure | {' | '.join(f'p{p}' for p in (1, 5, 50, 95, 99))} |", "|---|" + "---:|" * 5]
    for name in [f.name for f in fields(FaceQuality)]:
        values = np.array([getattr(q, name) for q in qualities])
        if name in ("yaw", "pitch", "roll"):
            values = np.abs(values)
            name = f"abs({name})"
        cells = " | ".join(f"{v:.3g}" for v in np.percentile(values, [1, 5, 50, 95, 99]))
        lines.append(f"| {name} | {cells} |")
    return lines


def table(study: Study) -> list[str]:
    photos = sum(q is not None for q in study.project.quality)
    off = study.accuracy_off()
    lines = [
        f"| threshold | LFW images refused | project photos refused (of {photos}) | LFW pairs kept "
        "| accuracy, gate on | accuracy of the pairs dropped | accuracy, gate off |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| gate off | 0.0 % | 0 | {len(study.same)} | {off:.4f} | - | {off:.4f} |",
    ]
    rows = [study.row(f"{name} {value:g}", replace(OFF, **{name: value}))
            for name, values in SWEEP.items() for value in values]
    rows.append(study.row("**defaults together**", DEFAULT_THRESHOLDS))
    rows += [study.row(label, thresholds) for label, thresholds in COMBINATIONS.items()]
    for r in rows:
        lines.append(f"| {r.label} | {100 * r.lfw_refused:.1f} % | {r.photos_refused} | {r.pairs_kept} "
                     f"| {r.accuracy_on:.4f} | {_figure(r.accuracy_dropped)} | {off:.4f} |")
    faces = study.row("", OFF)
    lines.append("")
    lines.append(f"Pairs whose two images have a face: {int(study.with_faces.sum())}, accuracy "
                 f"{faces.accuracy_faces:.4f} (the gate-on figures should be read against this too).")
    return lines


def _figure(value: float) -> str:
    return "-" if np.isnan(value) else f"{value:.4f}"


def refused_photos(project: Measured, thresholds: QualityThresholds) -> list[str]:
    lines = ["| photo | reasons | size | sharpness | yaw | pitch | roll | score | cut off |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, quality in zip(project.names, project.quality, strict=True):
        if quality is None:
            lines.append(f"| {name} | (no face) | | | | | | | |")
            continue
        reasons = assess(quality, thresholds)
        if reasons:
            q = quality
            lines.append(f"| {name} | {', '.join(reasons)} | {q.face_size:.0f} | {q.sharpness:.0f} | {q.yaw:.0f} "
                         f"| {q.pitch:.0f} | {q.roll:.0f} | {q.detection_score:.2f} | {q.cut_off:.2f} |")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--photos", type=Path, nargs="+", default=list(DEFAULT_PHOTOS))
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--refresh", action="store_true", help="measure LFW again even when cached")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    pairs = read_pairs(args.root)
    names = sorted({name for x, y, _ in pairs for name in (x, y)})
    key = cache_key(names)
    lfw = None if args.refresh else load(args.cache, key)
    measured = lfw is None
    if lfw is None:
        print(f"measuring {len(names)} LFW images (cached in {args.cache} afterwards)", flush=True)
        lfw = measure([(args.root / "images" / n).read_bytes() for n in names], names, log_every=10)
        save(lfw, args.cache, key)
    engine_s = time.perf_counter() - started
    project_files = photos(args.photos)
    project = measure([data for _, data in project_files], [name for name, _ in project_files])
    study = Study(lfw, pairs, project, EngineSettings.from_env().match_threshold)
    print(f"\nMachine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores; "
          f"{time.strftime('%Y-%m-%d %H:%M')}; LFW {'measured' if measured else 'from the cache'} "
          f"in {engine_s:.0f} s", flush=True)
    print(f"\nLFW images: {len(names)}, with a face: {int(study.found.sum())}; project photos: {len(project_files)}")
    print("\nLFW, distribution of each measure (largest face of each image):\n")
    print(*distribution(lfw), sep="\n")
    print("\nOne threshold at a time (the others off), then the defaults together:\n")
    print(*table(study), sep="\n")
    print(f"\nProject photos refused by the defaults ({DEFAULT_THRESHOLDS}):\n")
    print(*refused_photos(project, DEFAULT_THRESHOLDS), sep="\n")
    print(f"\nTotal run time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
