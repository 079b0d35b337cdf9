"""Verify accuracy of cheap probe-side embedding variants on the LFW development pairs.

    FACE_ENGINE_THREADS=1 python -m face_engine.bench.verify_jitter [--root ../shared/lfw-dev] [--pairs N]

``POST /api/faces/verify/`` embeds each image's largest face; a variant replaces that one
embedding with the mean of a few embeddings of the same face's chip. Detection is the slow part,
so each image is detected, aligned and chipped ONCE (default settings: ``hog+cnn``, FACE_MIN_SIZE
40, ONNX Runtime) and every variant is computed from the same chips: per image, 21 embeddings —
``jitter_chips(chip, 10, seed 0)`` (row 0: the plain chip), the chip mirrored left-right, the chip
of the mirrored *image* (landmarks found again on the mirrored photo, so the alignment is the
mirror's own, not the flipped chip of the original alignment), and ``jitter_chips(chip, 10,
seed 1)[1:]`` — then 16 more, 4 jitters for each of seeds 2–5, for the closing "by seed" lines:
how much a few jitters' accuracy depends on which jitters they are. The chips and embeddings are
cached under the temporary directory (never in the repository), keyed by the images and settings;
a rerun only times the variants (~2 min).

Columns: "pair" = both images embedded with the variant (verify of two images); "vs enrol" = the
first image enrolled as the service enrols (the mean of 10 jittered chips), the second embedded
with the variant (verify against a person). A pair with a face-less image counts as "different".
"+/-" = pairs plain gets wrong and the variant right / the other way round (at 0.6, both sides).
"extra" = embeddings per face on top of the plain one the pipeline already computed; "ms/face"
= the measured extra cost per face of building those chips and embedding them (one face at a
time, as verify does), on ``--threads`` threads, median over rounds.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from face_engine.bench.lfw import Embeddings, read_pairs, score
from face_engine.models.jitter import jitter_chips
from face_engine.pipeline import FacePipeline
from face_engine.settings import EngineSettings
from face_engine.types import BoundingBox, Face, RGBImage, Runtime

DEFAULT_ROOT = Path(__file__).resolve().parents[3] / "shared" / "lfw-dev"
BATCH = 64
ENROL = 10  # the enrolled side's jitters (FACE_ENROL_JITTERS' default)
THRESHOLD = 0.6

# Rows of each image's embedding table.
JITTER0 = list(range(0, 10))  # jitter_chips(chip, 10, seed 0): row 0 is the plain chip
MIRROR = 10  # the chip flipped left-right
ALIGNED_MIRROR = 11  # the chip of the mirrored image
JITTER1 = [0, *range(12, 21)]  # the plain chip, then jitter_chips(chip, 10, seed 1)[1:]
ROWS = 21
# A second table: jitter_chips(chip, 5, seed)[1:] for these seeds, to see how much a few jitters'
# accuracy moves with the seed (the service's jitters are seed 0's: deterministic, but a lucky seed
# on this set says nothing of other faces).
SPREAD_SEEDS = (2, 3, 4, 5)
SPREAD_JITTERS = 4
SPREAD_KS = (2, 3, 5)


@dataclass(frozen=True)
class Variant:
    name: str
    rows: tuple[int, ...]
    rescale: bool = False  # mean rescaled to its rows' mean norm (averaging shortens the vector)

    @property
    def extra(self) -> int:
        return len(self.rows) - 1

    def embed(self, table: np.ndarray) -> np.ndarray:
        vectors = table[list(self.rows)]
        mean: np.ndarray = vectors.mean(axis=0)
        if self.rescale:
            mean *= np.linalg.norm(vectors, axis=1).mean() / np.linalg.norm(mean)
        return mean


VARIANTS = [
    Variant("plain", (0,)),
    Variant("mirror", (0, MIRROR)),
    Variant("mirror-aligned", (0, ALIGNED_MIRROR)),
    Variant("mirror+aligned", (0, MIRROR, ALIGNED_MIRROR)),
    *(Variant(f"jitter{k}", tuple(JITTER0[:k])) for k in (2, 3, 5, 10)),
    *(Variant(f"jitter{k}-seed1", tuple(JITTER1[:k])) for k in (2, 3, 5, 10)),
    Variant("mirror+jitter3", (0, MIRROR, 1)),
    Variant("mirror+jitter5", (0, MIRROR, 1, 2, 3)),
    Variant("mirror+jitter10", (0, MIRROR, *JITTER0[1:9])),
    Variant("jitter10-rescaled", tuple(JITTER0), rescale=True),
    Variant("mirror-rescaled", (0, MIRROR), rescale=True),
]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_image(root: Path, name: str) -> RGBImage:
    return np.asarray(Image.open(root / "images" / name).convert("RGB"))


def mirrored_chip(pipeline: FacePipeline, image: RGBImage, face: Face) -> RGBImage:
    """The chip of ``face`` found again on the mirrored image: the box mirrored, landmarks and
    alignment computed there (detection is not redone: the mirrored box is HOG's box mirrored)."""
    width = image.shape[1]
    box = face.box
    flipped = BoundingBox(top=box.top, right=width - box.left, bottom=box.bottom, left=width - box.right)
    return pipeline.landmarks.align(np.ascontiguousarray(image[:, ::-1]), flipped)[1]


def variant_chips(rows: Sequence[int], chip: RGBImage, aligned: RGBImage) -> list[RGBImage]:
    """The chips behind ``rows`` of an image's embedding table, each seed's jitters made in one call
    (``jitter_chips`` makes a seed's chips in sequence)."""
    made: dict[int, RGBImage] = {}
    for seed, rows_of_seed in ((0, JITTER0), (1, JITTER1)):
        wanted = [rows_of_seed.index(r) for r in rows if r in rows_of_seed[1:]]
        if wanted:
            chips = jitter_chips(chip, max(wanted) + 1, seed)
            made.update((rows_of_seed[i], chips[i]) for i in wanted)
    made[MIRROR] = np.ascontiguousarray(chip[:, ::-1])
    made[ALIGNED_MIRROR] = aligned
    return [made[r] for r in rows]


def table_chips(chip: RGBImage, aligned: RGBImage) -> list[RGBImage]:
    """Every chip of an image's embedding table, in row order."""
    return [*jitter_chips(chip, 10, 0), np.ascontiguousarray(chip[:, ::-1]), aligned,
            *jitter_chips(chip, 10, 1)[1:]]


class Study:
    def __init__(self, root: Path, pairs: list[tuple[str, str, bool]], settings: EngineSettings,
                 cache: Path | None) -> None:
        self.root, self.pairs, self.cache = root, pairs, cache
        self.names = sorted({n for x, y, _ in pairs for n in (x, y)})
        self.pipeline = FacePipeline(settings)
        self.pipeline.load()
        s = settings
        key = "\n".join([str(root.resolve()), self.pipeline.model_id, s.detector.value, str(s.min_face_size),
                         str(s.detection_max_side), *self.names])
        self.key = hashlib.sha256(key.encode()).hexdigest()[:16]
        self._memory: dict[str, dict[str, np.ndarray]] = {}

    def _cached(self, what: str, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        if what in self._memory:
            return self._memory[what]
        self._memory[what] = self._read_or_compute(what, compute)
        return self._memory[what]

    def _read_or_compute(self, what: str, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        path = None if self.cache is None else self.cache / f"verify-jitter-{what}-{self.key}.npz"
        if path is not None and path.exists():
            log(f"{what}: read from {path}")
            with np.load(path) as data:
                return {k: data[k] for k in data.files}
        arrays = compute()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, **arrays)  # type: ignore[arg-type]
            log(f"{what}: cached in {path}")
        return arrays

    def chips(self) -> dict[str, np.ndarray]:
        """``found`` (1 when the image has a face), ``chip`` and ``aligned`` (the mirrored image's
        chip), in ``self.names`` order (zero chips where no face)."""
        return self._cached("chips", self._detect)

    def _detect(self) -> dict[str, np.ndarray]:
        log(f"detecting {len(self.names)} images")
        start = time.perf_counter()
        n = len(self.names)
        found = np.zeros(n, dtype=np.uint8)
        chips = np.zeros((n, 150, 150, 3), dtype=np.uint8)
        aligned = np.zeros_like(chips)
        detect_ms = 0.0
        for i in range(0, n, BATCH):
            images = [load_image(self.root, name) for name in self.names[i : i + BATCH]]
            for j, (image, result) in enumerate(zip(images, self.pipeline.analyze(images), strict=True)):
                detect_ms += result.timings_ms["detect"]
                if (face := result.largest) is not None:
                    found[i + j], chips[i + j] = 1, face.chip
                    aligned[i + j] = mirrored_chip(self.pipeline, image, face)
        log(f"detected in {time.perf_counter() - start:.1f} s ({detect_ms / n:.1f} ms/image detecting); "
            f"{n - int(found.sum())} images without a face")
        return {"found": found, "chip": chips, "aligned": aligned}

    def tables(self) -> np.ndarray:
        """Per image the ROWS embeddings (NaN where no face)."""
        return self._cached("embeddings", lambda: {"tables": self._embed(ROWS, table_chips)})["tables"]

    def spread_tables(self) -> np.ndarray:
        """Per image, SPREAD_JITTERS jittered embeddings for each of SPREAD_SEEDS, seed by seed."""
        def chips(chip: RGBImage, _: RGBImage) -> list[RGBImage]:
            return [c for seed in SPREAD_SEEDS for c in jitter_chips(chip, SPREAD_JITTERS + 1, seed)[1:]]

        rows = len(SPREAD_SEEDS) * SPREAD_JITTERS
        return self._cached("spread", lambda: {"tables": self._embed(rows, chips)})["tables"]

    def _embed(self, rows: int, chips_of: Callable[[RGBImage, RGBImage], list[RGBImage]]) -> np.ndarray:
        chips = self.chips()
        out = np.full((len(self.names), rows, 128), np.nan, dtype=np.float32)
        present = np.flatnonzero(chips["found"])
        log(f"embedding {len(present)} faces × {rows}")
        start = time.perf_counter()
        per_batch = max(1, 2 * BATCH // rows)
        for i in range(0, len(present), per_batch):
            chunk = present[i : i + per_batch]
            batch = [c for k in chunk for c in chips_of(chips["chip"][k], chips["aligned"][k])]
            out[chunk] = np.stack(self.pipeline.embedder.predict(batch)).reshape(len(chunk), rows, -1)
        log(f"embedded in {time.perf_counter() - start:.1f} s")
        return out

    def embeddings(self, variant: Variant, tables: np.ndarray) -> Embeddings:
        return {name: None if np.isnan(t[0, 0]) else variant.embed(t)
                for name, t in zip(self.names, tables, strict=True)}

    def extra_ms(self, variants: Sequence[Variant], faces: int, rounds: int) -> dict[str, float]:
        """Per variant, the median over ``rounds`` of the mean time per face to build its extra chips,
        embed them (one face a call, as verify does) and average them with the plain embedding.
        Rounds interleave the variants, so a burst of load on the machine hits them alike."""
        chips = self.chips()
        sample = np.flatnonzero(chips["found"])[:faces]
        plain = {k: self.pipeline.embedder.predict([chips["chip"][k]])[0] for k in sample}
        images = {k: load_image(self.root, self.names[k]) for k in sample}
        found = {k: self.pipeline.analyze([images[k]])[0].largest for k in sample}  # boxes for mirror-aligned
        timings: dict[str, list[float]] = {v.name: [] for v in variants}
        timings["plain embedding"] = []
        for _ in range(rounds):
            start = time.perf_counter()
            for k in sample:
                self.pipeline.embedder.predict([chips["chip"][k]])
            timings["plain embedding"].append((time.perf_counter() - start) * 1000 / len(sample))
            for variant in variants:
                start = time.perf_counter()
                for k in sample:
                    face = found[k]
                    assert face is not None
                    self._variant_once(variant, face, plain[k], images[k])
                timings[variant.name].append((time.perf_counter() - start) * 1000 / len(sample))
        return {name: float(np.median(values)) for name, values in timings.items()}

    def _variant_once(self, variant: Variant, face: Face, plain: np.ndarray, image: RGBImage) -> np.ndarray:
        """``variant``'s embedding of ``face`` given its plain embedding, computed as a service would."""
        if variant.extra == 0:
            return plain
        rows = variant.rows[1:]
        if list(rows) == JITTER0[1 : len(rows) + 1]:
            extra = jitter_chips(face.chip, len(rows) + 1)[1:]  # as the service builds them: one call
        else:
            # The mirrored image's landmarks and chip are part of mirror-aligned's cost.
            aligned = mirrored_chip(self.pipeline, image, face) if ALIGNED_MIRROR in rows else face.chip
            extra = variant_chips(rows, face.chip, aligned)
        vectors = np.stack([plain, *self.pipeline.embedder.predict(extra)])
        return Variant(variant.name, tuple(range(len(vectors))), variant.rescale).embed(vectors)


def subset(pairs: list[tuple[str, str, bool]], limit: int | None) -> list[tuple[str, str, bool]]:
    """``limit`` pairs spread evenly over the file (it lists the same-person pairs first)."""
    if not limit or limit >= len(pairs):
        return pairs
    return [pairs[int(i)] for i in np.linspace(0, len(pairs) - 1, limit).round()]


def seed_spread(study: Study, pairs: list[tuple[str, str, bool]], tables: np.ndarray,
                enrolled: Embeddings) -> str:
    """Pair accuracy at the threshold of ``jitter{k}`` (plain chip + k − 1 jitters) for every seed
    measured: seeds 0 and 1 from the main table, SPREAD_SEEDS from the spread table."""
    both_tables = np.concatenate([tables, study.spread_tables()], axis=1)
    lines = [f"jitter k by seed (pair accuracy at {THRESHOLD}; in brackets: vs enrol), seeds "
             f"{', '.join(map(str, (0, 1, *SPREAD_SEEDS)))}:"]
    for k in SPREAD_KS:
        both, person = [], []
        for seed in (0, 1, *SPREAD_SEEDS):
            if seed in (0, 1):
                rows = (JITTER0 if seed == 0 else JITTER1)[:k]
            else:
                first = ROWS + SPREAD_SEEDS.index(seed) * SPREAD_JITTERS
                rows = [0, *range(first, first + k - 1)]
            embedded = study.embeddings(Variant(f"jitter{k}-seed{seed}", tuple(rows)), both_tables)
            both.append(score(pairs, embedded, embedded, threshold=THRESHOLD).accuracy)
            person.append(score(pairs, enrolled, embedded, threshold=THRESHOLD).accuracy)
        cells = " ".join(f"{b:.4f} ({p:.4f})" for b, p in zip(both, person, strict=True))
        lines.append(f"  jitter{k:<3} {cells}  mean {np.mean(both):.4f} ({np.mean(person):.4f}), "
                     f"min {min(both):.4f}")
    return "\n".join(lines)


def correct(pairs: Sequence[tuple[str, str, bool]], left: Embeddings, right: Embeddings) -> np.ndarray:
    """Per pair, whether the decision at THRESHOLD is right (as ``score`` counts it)."""
    distances = np.array([np.inf if (a := left[x]) is None or (b := right[y]) is None
                          else float(np.linalg.norm(a - b)) for x, y, _ in pairs])
    return np.asarray((distances <= THRESHOLD) == np.array([s for _, _, s in pairs]))


HEADER = (f"{'variant':<18} {'extra':>5} {'pair@0.6':>8} {'errors':>6} {'+/-':>5} {'best t':>6} {'best acc':>8} "
          f"{'vs enrol@0.6':>12} {'best t':>6} {'best acc':>8} {'ms/face':>7}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--pairs", type=int, default=None, help="use this many pairs, spread evenly (quick run)")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("FACE_ENGINE_THREADS") or 1))
    parser.add_argument("--timing-faces", type=int, default=40, help="faces timed per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "facerec-bench",
                        help="where chips and embeddings are cached (default: %(default)s)")
    parser.add_argument("--no-cache", action="store_true")
    args = parser.parse_args(argv)

    settings = EngineSettings(runtime=Runtime.ONNX, threads=args.threads, workers=args.threads)
    pairs = subset(read_pairs(args.root), args.pairs)
    study = Study(args.root, pairs, settings, None if args.no_cache else args.cache)
    log(f"{len(pairs)} pairs over {len(study.names)} images, {args.threads} thread(s), "
        f"detector {settings.detector.value}, FACE_MIN_SIZE {settings.min_face_size}")
    tables = study.tables()
    study.spread_tables()  # computed (or read) before the timing, which wants a machine at rest
    enrolled = study.embeddings(Variant("enrol", tuple(JITTER0[:ENROL])), tables)
    load_before = os.getloadavg()
    costs = study.extra_ms(VARIANTS, args.timing_faces, args.rounds)
    load_after = os.getloadavg()
    rows = []
    plain = study.embeddings(VARIANTS[0], tables)
    plain_right = correct(pairs, plain, plain)
    for variant in VARIANTS:
        embedded = study.embeddings(variant, tables)
        both = score(pairs, embedded, embedded, threshold=THRESHOLD)
        person = score(pairs, enrolled, embedded, threshold=THRESHOLD)
        right = correct(pairs, embedded, embedded)
        wrong = int((~right).sum())
        changed = f"{int((right & ~plain_right).sum())}/{int((plain_right & ~right).sum())}"
        rows.append(f"{variant.name:<18} {variant.extra:>5d} {both.accuracy:>8.4f} {wrong:>6d} {changed:>5} "
                    f"{both.best_threshold:>6.3f} {both.best_accuracy:>8.4f} {person.accuracy:>12.4f} "
                    f"{person.best_threshold:>6.3f} {person.best_accuracy:>8.4f} {costs[variant.name]:>7.1f}")
    print(HEADER, *rows, sep="\n")
    print(seed_spread(study, pairs, tables, enrolled))
    print(f"plain embedding of one chip (already paid by the pipeline): {costs['plain embedding']:.1f} ms/face; "
          f"{args.threads} thread(s); load average {load_before[0]:.2f} before timing, {load_after[0]:.2f} after, "
          f"on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
