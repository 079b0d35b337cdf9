"""What one "this is not X" does to false matches, on held-out LFW images (../shared/lfw-dev).

    python -m face_engine.bench.negatives [--root ../shared/lfw-dev] [--thresholds 0.6 0.7]

Protocol (held out): every identity with at least 3 images is enrolled as one person from its
first image with a face (the enrolment embedding: the mean over ENROL_JITTERS jittered chips,
as the service enrols). Every other image is a probe, named after its nearest person when that
person's face is within the threshold (the service's top match). A probe named as someone else
is a false match. Corrections: for each identity, the first of its images that is falsely named
X becomes one negative of X (as an operator's "not X" would), and that image leaves the
evaluation. Then every remaining probe is named again with the negatives in the index:

* held-out images of the corrected identities (their OTHER images): how many are still named X,
  the person the correction said they are not, and how many are named wrongly at all (X, or
  another person Z: one "not X" says nothing about Z);
* all false matches: every remaining probe named as someone it is not;
* true matches: the enrolled people's held-out images named rightly (what negatives may cost).

The embeddings are cached in var/ (keyed by the model id), so a rerun takes seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from face_engine.settings import EngineSettings
from face_engine.types import EMBEDDING_DIM

DEFAULT_ROOT = Path(__file__).resolve().parents[3] / "shared" / "lfw-dev"
CACHE = Path(__file__).resolve().parents[2] / "var" / "corrections-lfw-embeddings.npz"
MIN_IMAGES = 3  # identities enrolled: one image in the gallery, at least two held out
BATCH = 32
K = 5

Vectors = npt.NDArray[np.float32]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def identity(name: str) -> str:
    return name.rsplit("_", 1)[0]


@dataclass(frozen=True)
class Embedded:
    names: list[str]
    plain: Vectors  # one row per image, NaN where no face was found
    enrol: Vectors  # jittered enrolment embedding, NaN but for the enrolled images
    model_id: str


def embed(root: Path, settings: EngineSettings, cache: Path = CACHE) -> Embedded:
    from PIL import Image

    from face_engine.pipeline import FacePipeline

    pipeline = FacePipeline(settings)
    pipeline.load()
    names = sorted(p.name for p in (root / "images").iterdir() if p.suffix == ".jpg")
    if cache.is_file():
        stored = np.load(cache, allow_pickle=False)
        if str(stored["model_id"]) == pipeline.model_id and list(stored["names"]) == names:
            return Embedded(names, stored["plain"], stored["enrol"], pipeline.model_id)
    counts: dict[str, int] = defaultdict(int)
    for name in names:
        counts[identity(name)] += 1
    plain = np.full((len(names), EMBEDDING_DIM), np.nan, dtype=np.float32)
    enrol = np.full_like(plain, np.nan)
    enrolled: set[str] = set()
    start = time.perf_counter()
    for offset in range(0, len(names), BATCH):
        chunk = names[offset : offset + BATCH]
        images = [np.asarray(Image.open(root / "images" / n).convert("RGB")) for n in chunk]
        for i, (name, result) in enumerate(zip(chunk, pipeline.analyze(images), strict=True)):
            face = result.largest
            if face is None:
                continue
            plain[offset + i] = face.embedding
            who = identity(name)
            if counts[who] >= MIN_IMAGES and who not in enrolled:
                enrolled.add(who)
                enrol[offset + i] = pipeline.enrol_embedding(face)
        log(f"embedded {min(offset + BATCH, len(names))}/{len(names)} ({time.perf_counter() - start:.0f} s)")
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, names=np.array(names), plain=plain, enrol=enrol, model_id=np.array(pipeline.model_id))
    return Embedded(names, plain, enrol, pipeline.model_id)


@dataclass(frozen=True)
class Row:
    threshold: float
    negatives: int
    corrected_probes: int  # held-out images of the corrected identities
    corrected_false_before: int  # named as anyone else
    corrected_false_after: int
    corrected_x_before: int  # named as the very person the correction said they are not
    corrected_x_after: int
    probes: int
    false_before: int
    false_after: int
    genuine: int  # held-out images of enrolled people
    true_before: int
    true_after: int


def evaluate(data: Embedded, threshold: float) -> Row:
    from face_engine.index import GalleryIndex

    enrolled_rows = np.flatnonzero(~np.isnan(data.enrol[:, 0]))
    people = [identity(data.names[r]) for r in enrolled_rows]
    person_of = {who: pid for pid, who in enumerate(people)}
    gallery = data.enrol[enrolled_rows]
    in_gallery = set(enrolled_rows.tolist())
    probe_rows = [r for r in range(len(data.names)) if r not in in_gallery and not np.isnan(data.plain[r, 0])]
    probes = data.plain[probe_rows]
    truth = np.array([person_of.get(identity(data.names[r]), -1) for r in probe_rows])

    def named(index: GalleryIndex, negatives: bool) -> np.ndarray:
        found = index.search(probes, K, negatives=negatives)
        return np.array([m[0].person_id if m and m[0].distance <= threshold else -1 for m in found])

    plain_index = GalleryIndex(np.arange(len(people)), np.arange(len(people)), gallery)
    before = named(plain_index, negatives=False)
    # One correction per identity: its first falsely named image becomes a negative of that person.
    corrected: dict[str, int] = {}
    for i, r in enumerate(probe_rows):
        who = identity(data.names[r])
        if before[i] not in (-1, truth[i]) and who not in corrected:
            corrected[who] = i
    used = np.zeros(len(probe_rows), dtype=bool)
    used[list(corrected.values())] = True
    negative_people = np.array([before[i] for i in corrected.values()], dtype=np.int64)
    index = GalleryIndex(np.arange(len(people)), np.arange(len(people)), gallery,
                         negative_person_ids=negative_people,
                         negative_embeddings=probes[list(corrected.values())].reshape(-1, EMBEDDING_DIM))
    after = named(index, negatives=True)
    kept = ~used
    held = kept & np.array([identity(data.names[r]) in corrected for r in probe_rows])
    not_x = np.full(len(probe_rows), -2)  # per probe of a corrected identity: the person it is not
    for i, r in enumerate(probe_rows):
        first = corrected.get(identity(data.names[r]))
        if first is not None:
            not_x[i] = before[first]
    wrong_before = (before != -1) & (before != truth)
    wrong_after = (after != -1) & (after != truth)
    genuine = kept & (truth != -1)
    return Row(
        threshold=threshold, negatives=len(corrected),
        corrected_probes=int(held.sum()), corrected_false_before=int((wrong_before & held).sum()),
        corrected_false_after=int((wrong_after & held).sum()),
        corrected_x_before=int(((before == not_x) & held).sum()),
        corrected_x_after=int(((after == not_x) & held).sum()),
        probes=int(kept.sum()), false_before=int((wrong_before & kept).sum()),
        false_after=int((wrong_after & kept).sum()),
        genuine=int(genuine.sum()), true_before=int(((before == truth) & genuine).sum()),
        true_after=int(((after == truth) & genuine).sum()),
    )


HEADER = ("| threshold | negatives | held-out images of corrected strangers | named X (the person corrected) "
          "before → after | named anyone wrong before → after | all false matches before → after (of probes) "
          "| true matches before → after (of genuine) |\n"
          "|---:|---:|---:|---:|---:|---:|---:|")


def table_row(r: Row) -> str:
    return (f"| {r.threshold:.2f} | {r.negatives} | {r.corrected_probes} | "
            f"{r.corrected_x_before} → {r.corrected_x_after} | "
            f"{r.corrected_false_before} → {r.corrected_false_after} | "
            f"{r.false_before} → {r.false_after} (of {r.probes}) | "
            f"{r.true_before} → {r.true_after} (of {r.genuine}) |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.5, 0.6, 0.7])
    parser.add_argument("--cache", type=Path, default=CACHE)
    args = parser.parse_args(argv)
    settings = EngineSettings.from_env()
    if not os.environ.get("FACE_ENGINE_THREADS"):
        settings = EngineSettings.from_env({**os.environ, "FACE_ENGINE_THREADS": "1", "FACE_ENGINE_WORKERS": "1"})
    data = embed(args.root, settings, args.cache)
    faces = int((~np.isnan(data.plain[:, 0])).sum())
    log(f"{len(data.names)} images ({faces} with a face), {int((~np.isnan(data.enrol[:, 0])).sum())} people "
        f"enrolled, model {data.model_id}")
    print(HEADER)
    for threshold in args.thresholds:
        print(table_row(evaluate(data, threshold)), flush=True)


if __name__ == "__main__":
    main()
