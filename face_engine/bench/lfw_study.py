"""Detector, CNN-box mapping and jitter study on the LFW development pairs (../shared/lfw-dev).

    FACE_ENGINE_THREADS=1 python -m face_engine.bench.lfw_study [--root ../shared/lfw-dev] [--only NAME ...]

Every candidate runs ONNX Runtime through ``FacePipeline.analyze`` and keeps each image's largest
face; a pair with a face-less image counts as "different" (as in ``face_engine.bench.lfw``).

* ``hog``, ``hog+cnn``, ``cnn80``, ``cnn40``: the detector kinds as shipped (the number is
  ``FACE_MIN_SIZE``; HOG runs at FACE_MIN_SIZE 40, i.e. 2× like the dlib reference).
* ``*-mapped``: CNN boxes (alone, or HOG's fallback) moved to the HOG convention before the
  landmarks, with a ``BoxMapping`` fitted on all these images (in-sample): CNN (FACE_MIN_SIZE 80)
  against HOG boxes of the same largest face. ``*-mapped-2fold``: people split in two halves,
  each half's images mapped with the mapping fitted on the other half's (out-of-sample).
* ``jitterN-enrol``: the first image of each pair (the enrolled side) embedded as the mean of
  ``jitter_chips(chip, N)``; ``jitter10-both``: both sides. Chips from ``JITTER_BASE``.

Detection time is Detector.predict's mean per image; "s" is the candidate's wall time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property, partial
from pathlib import Path

import numpy as np
from PIL import Image

from face_engine.bench.lfw import Embeddings, LfwResult, read_pairs, score
from face_engine.models.detector import Detector
from face_engine.models.embedder import Embedder
from face_engine.models.jitter import jitter_chips
from face_engine.pipeline import FacePipeline
from face_engine.settings import EngineSettings
from face_engine.types import BoundingBox, Detection, DetectorKind, Face, RGBImage, Runtime

DEFAULT_ROOT = Path(__file__).resolve().parents[3] / "shared" / "lfw-dev"
BATCH = 64
MATCH_IOU = 0.5  # a HOG box and a CNN box of one face, for fitting the mapping
MAPPING_SOURCE = "cnn80"  # the CNN run the mapping is fitted on (against "hog")
JITTER_BASE = "hog+cnn"
JITTER_SEED = 0
MAX_JITTER = 10

# name → (detector kind, FACE_MIN_SIZE, CNN boxes mapped to the HOG convention)
DETECTORS: dict[str, tuple[DetectorKind, int, bool]] = {
    "hog": (DetectorKind.HOG, 40, False),
    "hog+cnn": (DetectorKind.HOG_CNN, 40, False),
    "cnn80": (DetectorKind.CNN, 80, False),
    "cnn40": (DetectorKind.CNN, 40, False),
    "cnn80-mapped": (DetectorKind.CNN, 80, True),
    "hog+cnn-mapped": (DetectorKind.HOG_CNN, 40, True),
}



@dataclass(frozen=True)
class BoxMapping:
    """CNN box → HOG-like box: centre moved by (dx·w, dy·h), sides scaled by (sw, sh)."""

    dx: float  # (HOG centre x − CNN centre x) / CNN width
    dy: float  # (HOG centre y − CNN centre y) / CNN height
    sw: float  # HOG width / CNN width
    sh: float  # HOG height / CNN height

    def apply(self, box: BoundingBox, width: int, height: int) -> BoundingBox:
        """``box`` mapped, then clipped to a ``width``×``height`` image."""
        cx = (box.left + box.right) / 2 + self.dx * box.width
        cy = (box.top + box.bottom) / 2 + self.dy * box.height
        half_w, half_h = self.sw * box.width / 2, self.sh * box.height / 2
        return BoundingBox(
            top=round(cy - half_h), right=round(cx + half_w), bottom=round(cy + half_h), left=round(cx - half_w)
        ).clipped(width, height)

    @classmethod
    def fit(cls, cnn: Sequence[BoundingBox], hog: Sequence[BoundingBox]) -> BoxMapping:
        """Least squares over matched (CNN, HOG) boxes of the same faces: mean relative centre
        offsets, side scales through the origin (both detectors' sizes are quantised to their
        pyramid levels, so per-face ratios are multi-modal and medians jump between modes)."""
        if len(cnn) != len(hog) or not cnn:
            raise ValueError("need as many HOG boxes as CNN boxes, and at least one")
        c = np.array([[b.left + b.right, b.top + b.bottom, b.width, b.height] for b in cnn], dtype=np.float64)
        h = np.array([[b.left + b.right, b.top + b.bottom, b.width, b.height] for b in hog], dtype=np.float64)
        return cls(
            dx=float(np.mean((h[:, 0] - c[:, 0]) / 2 / c[:, 2])),
            dy=float(np.mean((h[:, 1] - c[:, 1]) / 2 / c[:, 3])),
            sw=float(c[:, 2] @ h[:, 2] / (c[:, 2] @ c[:, 2])),
            sh=float(c[:, 3] @ h[:, 3] / (c[:, 3] @ c[:, 3])),
        )


@dataclass(frozen=True)
class Run:
    """One pass over images: each image's largest face (or None) and what it cost."""

    faces: dict[str, Face | None]
    seconds: float
    detect_ms: float  # mean per image

    def embeddings(self) -> Embeddings:
        return {name: None if face is None else face.embedding for name, face in self.faces.items()}

    @staticmethod
    def merge(runs: Sequence[Run]) -> Run:
        count = sum(len(r.faces) for r in runs)
        return Run(
            faces={k: v for r in runs for k, v in r.faces.items()},
            seconds=sum(r.seconds for r in runs),
            detect_ms=sum(r.detect_ms * len(r.faces) for r in runs) / count,
        )


@dataclass(frozen=True)
class Outcome:
    left: Embeddings  # first image of each pair
    right: Embeddings  # second image
    seconds: float
    detect_ms: float


class MappedCnnDetector:
    """``Detector`` stand-in: HOG first when ``settings.detector`` is hog+cnn, then the CNN, whose
    boxes are mapped to the HOG convention before the landmarks see them."""

    def __init__(self, settings: EngineSettings, mapping: BoxMapping) -> None:
        self.hog = Detector(replace(settings, detector=DetectorKind.HOG)) \
            if settings.detector is DetectorKind.HOG_CNN else None
        self.cnn = Detector(replace(settings, detector=DetectorKind.CNN))
        self.mapping = mapping
        self.name = f"dlib-{settings.detector.value}-mapped"

    @property
    def loaded(self) -> bool:
        return self.cnn.loaded and (self.hog is None or self.hog.loaded)

    def load(self) -> None:
        self.cnn.load()
        if self.hog is not None:
            self.hog.load()

    def predict(self, image: RGBImage) -> list[Detection]:
        if self.hog is not None and (found := self.hog.predict(image)):
            return found
        height, width = image.shape[:2]
        mapped = [Detection(self.mapping.apply(d.box, width, height), d.score) for d in self.cnn.predict(image)]
        return [d for d in mapped if d.box.area > 0]


def iou(a: BoundingBox, b: BoundingBox) -> float:
    inter = BoundingBox(top=max(a.top, b.top), right=min(a.right, b.right),
                        bottom=min(a.bottom, b.bottom), left=max(a.left, b.left))
    overlap = inter.area if inter.width > 0 and inter.height > 0 else 0
    return overlap / (a.area + b.area - overlap)


def fit_mapping(hog: Run, cnn: Run, names: Sequence[str]) -> BoxMapping:
    """CNN → HOG mapping from the images of ``names`` where both found the same (largest) face."""
    matched = [(c.box, h.box) for n in names
               if (h := hog.faces[n]) is not None and (c := cnn.faces[n]) is not None
               and iou(c.box, h.box) >= MATCH_IOU]
    return BoxMapping.fit([c for c, _ in matched], [h for _, h in matched])


def person(image_name: str) -> str:
    return image_name.rsplit("_", 1)[0]  # LFW: <Person_Name>_<NNNN>.jpg


class Study:
    def __init__(self, root: Path, settings: EngineSettings) -> None:
        self.root = root
        self.settings = settings
        self.pairs = read_pairs(root)
        self.names = sorted({n for x, y, _ in self.pairs for n in (x, y)})
        people = sorted({person(n) for n in self.names})
        fold_of = {p: i % 2 for i, p in enumerate(people)}
        self.folds = [[n for n in self.names if fold_of[person(n)] == k] for k in (0, 1)]
        self.runs: dict[str, Run] = {}  # detector runs over every image, by DETECTORS name

    def image(self, name: str) -> RGBImage:
        return np.asarray(Image.open(self.root / "images" / name).convert("RGB"))

    def pipeline(self, name: str, mapping: BoxMapping | None = None) -> FacePipeline:
        """The pipeline of ``DETECTORS[name]``; a mapped one uses ``mapping``, by default the one
        fitted on every image."""
        kind, min_face_size, mapped = DETECTORS[name]
        settings = replace(self.settings, detector=kind, min_face_size=min_face_size)
        pipeline = FacePipeline(settings)
        if mapped:
            mapping = mapping or self.mapping(self.names)
            pipeline.detector = MappedCnnDetector(settings, mapping)  # type: ignore[assignment]
        pipeline.load()
        return pipeline

    def analyze(self, pipeline: FacePipeline, names: Sequence[str]) -> Run:
        faces: dict[str, Face | None] = {}
        detect_ms = 0.0
        start = time.perf_counter()
        for i in range(0, len(names), BATCH):
            chunk = names[i : i + BATCH]
            for name, result in zip(chunk, pipeline.analyze([self.image(n) for n in chunk]), strict=True):
                faces[name] = result.largest
                detect_ms += result.timings_ms["detect"]
        return Run(faces, time.perf_counter() - start, detect_ms / len(names))

    def run(self, name: str) -> Run:
        if name not in self.runs:
            log(f"running {name}")
            self.runs[name] = self.analyze(self.pipeline(name), self.names)
        return self.runs[name]

    def mapping(self, names: Sequence[str]) -> BoxMapping:
        """The CNN → HOG mapping fitted on the images ``names``."""
        return fit_mapping(self.run("hog"), self.run(MAPPING_SOURCE), names)

    def fold_mappings(self) -> list[BoxMapping]:
        """Per fold, the mapping fitted on the *other* fold's images."""
        return [self.mapping(self.folds[1 - k]) for k in (0, 1)]

    def two_fold(self, name: str) -> Run:
        log(f"running {name} 2-fold")
        return Run.merge([self.analyze(self.pipeline(name, mapping), fold)
                          for mapping, fold in zip(self.fold_mappings(), self.folds, strict=True)])

    @cached_property
    def jittered(self) -> tuple[dict[str, np.ndarray | None], float]:
        """Per image, the embeddings of ``jitter_chips(chip, MAX_JITTER)`` (row 0: the original
        chip), and the seconds jittering and embedding took."""
        log(f"jittering {JITTER_BASE} chips ×{MAX_JITTER}")
        faces = self.run(JITTER_BASE).faces
        embedder = Embedder(self.settings)
        chips = {n: face.chip for n, face in faces.items() if face is not None}
        found = list(chips)
        out: dict[str, np.ndarray | None] = dict.fromkeys(self.names)
        start = time.perf_counter()
        per_batch = max(1, BATCH // MAX_JITTER)
        for i in range(0, len(found), per_batch):
            chunk = found[i : i + per_batch]
            jittered = [c for n in chunk for c in jitter_chips(chips[n], MAX_JITTER, JITTER_SEED)]
            vectors = np.stack(embedder.predict(jittered)).reshape(len(chunk), MAX_JITTER, -1)
            out.update(zip(chunk, vectors, strict=True))
        return out, time.perf_counter() - start


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def detector_outcome(study: Study, name: str) -> Outcome:
    run = study.run(name)
    embeddings = run.embeddings()
    return Outcome(embeddings, embeddings, run.seconds, run.detect_ms)


def two_fold_outcome(study: Study, name: str) -> Outcome:
    run = study.two_fold(name)
    embeddings = run.embeddings()
    return Outcome(embeddings, embeddings, run.seconds, run.detect_ms)


def jitter_outcome(study: Study, count: int, both: bool) -> Outcome:
    vectors, seconds = study.jittered
    jittered = {n: None if v is None else v[:count].mean(axis=0) for n, v in vectors.items()}
    plain = {n: None if v is None else v[0] for n, v in vectors.items()}
    return Outcome(jittered, jittered if both else plain, seconds * count / MAX_JITTER,
                   study.run(JITTER_BASE).detect_ms)


CANDIDATES: dict[str, Callable[[Study], Outcome]] = {
    **{name: partial(detector_outcome, name=name) for name in DETECTORS},
    **{f"{name}-2fold": partial(two_fold_outcome, name=name) for name, (_, _, mapped) in DETECTORS.items() if mapped},
    "jitter5-enrol": partial(jitter_outcome, count=5, both=False),
    "jitter10-enrol": partial(jitter_outcome, count=10, both=False),
    "jitter10-both": partial(jitter_outcome, count=10, both=True),
}


def row(name: str, result: LfwResult, outcome: Outcome) -> str:
    return (f"{name:<22} {result.accuracy:>8.5f} {result.best_threshold:>6.3f} {result.best_accuracy:>8.5f} "
            f"{result.images_without_face:>7d} {outcome.seconds:>8.1f} {outcome.detect_ms:>9.1f}")


HEADER = f"{'candidate':<22} {'acc@0.6':>8} {'best t':>6} {'best acc':>8} {'no face':>7} {'s':>8} {'detect ms':>9}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--only", nargs="+", choices=list(CANDIDATES), metavar="NAME",
                        help=f"candidates to run (default: all): {', '.join(CANDIDATES)}")
    args = parser.parse_args(argv)
    threads = int(os.environ.get("FACE_ENGINE_THREADS") or 1)
    study = Study(args.root, EngineSettings(runtime=Runtime.ONNX, threads=threads, workers=threads))
    log(f"{len(study.pairs)} pairs over {len(study.names)} images, {threads} thread(s)")
    rows = []
    for name in args.only or CANDIDATES:
        outcome = CANDIDATES[name](study)
        rows.append(row(name, score(study.pairs, outcome.left, outcome.right), outcome))
        log(rows[-1])
    if "hog" in study.runs and MAPPING_SOURCE in study.runs:
        log(f"CNN→HOG mapping fitted on all images: {study.mapping(study.names)}")
        log(f"per fold (fitted on the other fold): {study.fold_mappings()}")
    print(HEADER, *rows, sep="\n")


if __name__ == "__main__":
    main()
