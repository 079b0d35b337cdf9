"""Benchmark of the duplicate-pairs pass (people.duplicates) over a gallery of 10,000 people with
planted duplicates, on a throw-away test database.

    .venv/bin/python -m loadtest.duplicates [--people 10000] [--planted 20] [--seed 0]

The gallery (2 faces a person; loadtest/duplicates_data.py says how the embeddings are made):
- planted duplicates: --planted LFW identities with four or more photos, each enrolled twice under
  two names ("X" with photos 1–2, "X (again)" with photos 3–4): different photos, as a real
  double enrolment would be;
- every other real identity (LFW's 2,132 less the planted, the project's 5), its real embeddings;
- synthetic people up to --people, drawn from the model fitted on the real embeddings.
Rows are written as enrolment stores them (encoded faces of the engine's model id), then the pass
runs as the API runs it (people.duplicates.duplicate_scan: the database scan, the FAISS range search,
the grouping) at several thresholds. Printed per threshold: the pass's time, pairs found, planted
pairs found (all of them, at the default threshold, or the exit status is 1), false pairs, and the
worst rank of a planted pair in the answer (nearest first). Then the API call's time, and the
IVF search against the exact one (time, share of the exact pairs found).
DATABASE_URL picks PostgreSQL (Django creates and drops test_<name>); SQLite otherwise."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")

THRESHOLDS = (0.4, 0.45, 0.5, 0.55, 0.6)


def build_gallery(real: dict[str, list[np.ndarray]], model, *, people: int, planted: int,
                  rng: np.random.Generator) -> tuple[list[tuple[str, np.ndarray]], list[tuple[int, int]], int]:
    """[(name, (faces, 128) array)], the planted pairs as row positions, how many rows are real."""
    candidates = sorted(name for name, vectors in real.items() if len(vectors) >= 4 and ":" not in name)
    if len(candidates) < planted:
        raise SystemExit(f"only {len(candidates)} identities with four photos; asked to plant {planted}")
    chosen = set(rng.choice(candidates, size=planted, replace=False).tolist())
    rows: list[tuple[str, np.ndarray]] = []
    pairs: list[tuple[int, int]] = []
    for name in sorted(chosen):
        vectors = np.stack(real[name])
        rows.append((name.replace("_", " "), vectors[0:2]))
        rows.append((f"{name.replace('_', ' ')} (again)", vectors[2:4]))
        pairs.append((len(rows) - 2, len(rows) - 1))
    for name in sorted(set(real) - chosen):
        vectors = np.stack(real[name])[:2]
        if len(vectors) == 1:  # one photo: the second face as another photo of them would differ
            vectors = np.concatenate([vectors, vectors + model.noise(rng, (1,), scale=np.sqrt(2))])
        rows.append((name.replace("_", " ").replace("project:", ""), vectors))
    real_rows = len(rows)
    synthetic = max(0, people - len(rows))
    centres = model.centres(rng, synthetic)
    faces = centres[:, None, :] + model.noise(rng, (synthetic, 2))
    rows.extend((f"Synthetic {i + 1:05d}", faces[i]) for i in range(synthetic))
    return rows, pairs, real_rows


def store(rows: list[tuple[str, np.ndarray]], model_id: str) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Write people and their encoded faces; (person ids by row, face person ids, face vectors)."""
    from django.db import transaction
    from django.utils import timezone

    from people.index_log import index_faces_changed
    from people.models import Face, Person, embedding_bytes

    persons = Person.objects.bulk_create([Person(name=name) for name, _ in rows], batch_size=2000)
    now = timezone.now()
    faces, owners, vectors = [], [], []
    for (_, stack), person in zip(rows, persons, strict=True):
        for n, vector in enumerate(stack):
            faces.append(Face(person_id=person.pk, sha256=f"{person.pk:032x}{n:032x}", status=Face.Status.ENCODED,
                              embedding=embedding_bytes(vector), model=model_id, encoded_at=now))
            owners.append(person.pk)
            vectors.append(vector)
    Face.objects.bulk_create(faces, batch_size=2000)
    with transaction.atomic():
        index_faces_changed(face.pk for face in faces)
    return [p.pk for p in persons], np.asarray(owners, dtype=np.int64), np.stack(vectors).astype(np.float32)


def realism(rows, real_rows: int, rng: np.random.Generator) -> None:
    from loadtest.duplicates_data import distance_quantiles

    def line(label: str, people: list[np.ndarray]) -> None:
        same, diff, within6, within5 = distance_quantiles(people, rng)
        print(f"  {label:<10} same person  p1 {same[1]:.3f}  p50 {same[3]:.3f}  p95 {same[4]:.3f} | "
              f"different  p0.1 {diff[0]:.3f}  p1 {diff[1]:.3f}  p5 {diff[2]:.3f}  p50 {diff[3]:.3f} | "
              f"different within 0.6: {within6:.2%}, within 0.5: {within5:.3%}")

    print("Embeddings, real against synthetic (distances between two faces):")
    line("real", [stack for _, stack in rows[:real_rows]])
    if len(rows) > real_rows:
        line("synthetic", [stack for _, stack in rows[real_rows:]])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--planted", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings
    from django.db import connection

    from face_engine.pairs import close_pairs
    from face_engine.registry import get_pipeline
    from loadtest.duplicates_data import fit, real_embeddings
    from people.duplicates import duplicate_scan

    settings.MEDIA_ROOT = tempfile.mkdtemp(prefix="facerec-bench-media-")
    pipeline = get_pipeline(settings.FACE_ENGINE)
    pipeline.load()
    real, embed_seconds = real_embeddings(pipeline)
    rng = np.random.default_rng(args.seed)
    model = fit(real)
    rows, planted_rows, real_rows = build_gallery(real, model, people=args.people, planted=args.planted, rng=rng)
    default = settings.FACE_ENGINE.match_threshold
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    database = f"{connection.vendor}"
    ok, near, strictest = True, [], (0.0, [], [])
    try:
        started = time.perf_counter()
        person_ids, owners, vectors = store(rows, pipeline.model_id)
        planted = {(person_ids[a], person_ids[b]) for a, b in planted_rows}
        print(f"Duplicate pairs benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()} "
              f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}), database {database}, "
              f"model {pipeline.model_id}")
        print(f"Gallery: {len(rows)} people, {len(vectors)} faces ({real_rows} real identities, "
              f"{len(rows) - real_rows} synthetic), {len(planted)} planted duplicates; real embeddings "
              f"{f'computed in {embed_seconds:.0f} s' if embed_seconds else 'from the cache'}; "
              f"rows written in {time.perf_counter() - started:.1f} s")
        realism(rows, real_rows, rng)
        duplicate_scan(threshold=default, limit=0)  # warm: imports, FAISS threads
        print("threshold  pass s  pairs  planted found  false pairs  worst planted rank")
        for threshold in sorted({*THRESHOLDS, default}):
            scan = duplicate_scan(threshold=threshold, limit=100)
            found = close_pairs(vectors, owners, threshold)  # the same search, every pair, for scoring
            keys = list(zip(found.label_a.tolist(), found.label_b.tolist(), strict=True))
            ranks = [i + 1 for i, key in enumerate(keys) if key in planted]
            hit = len(ranks)
            print(f"  {threshold:<8} {scan.seconds:6.2f}  {scan.total:5d}  {hit:5d}/{len(planted):<7}  "
                  f"{scan.total - hit:11d}  {max(ranks) if ranks else '-'}")
            if threshold == min(THRESHOLDS):
                strictest = (threshold, keys, found.distance.tolist())
            if threshold == default:
                ok = hit == len(planted)
                near = sorted(float(d) for key, d in zip(keys, found.distance.tolist(), strict=True) if key in planted)
        print(f"Planted pairs' nearest faces: {', '.join(f'{d:.3f}' for d in near)}")
        unplanted(*strictest, planted=planted, person_ids=person_ids, rows=rows, real_rows=real_rows)
        ok = api_pass(default) and ok
        ivf_check(vectors, owners, default)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
    print("OK" if ok else "FAILED: a planted duplicate was not found at the default threshold")
    return 0 if ok else 1


def unplanted(threshold: float, keys: list, distances: list, *, planted: set, person_ids: list[int], rows: list,
              real_rows: int) -> None:
    """The pairs found that were not planted, by kind, and the nearest real ones by name: LFW has
    people filed under two names, and photos where the largest face is someone else's."""
    row_of = {pk: n for n, pk in enumerate(person_ids)}
    kinds = {"real-real": [], "real-synthetic": [], "synthetic-synthetic": []}
    for key, d in zip(keys, distances, strict=True):
        if key in planted:
            continue
        real = sum(row_of[pk] < real_rows for pk in key)
        kinds[("synthetic-synthetic", "real-synthetic", "real-real")[real]].append((d, key))
    print(f"Pairs found at {threshold} that were not planted: "
          + ", ".join(f"{len(found)} {kind}" for kind, found in kinds.items()))
    for d, (a, b) in kinds["real-real"][:40]:
        print(f"  {d:.3f}  {rows[row_of[a]][0]}  ~  {rows[row_of[b]][0]}")


def api_pass(threshold: float) -> bool:
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    staff = get_user_model().objects.create_user("bench-staff", is_staff=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {Token.objects.create(user=staff).key}")
    started = time.perf_counter()
    response = client.get("/api/people/duplicates/", {"threshold": threshold, "limit": 1000})
    seconds = time.perf_counter() - started
    body = response.json()
    print(f"API GET /api/people/duplicates/?threshold={threshold}&limit=1000: {response.status_code} in "
          f"{seconds:.2f} s, count {body.get('count')}, {len(body.get('results', []))} pairs in the answer")
    return response.status_code == 200


def ivf_check(vectors: np.ndarray, owners: np.ndarray, threshold: float) -> None:
    from django.conf import settings

    from face_engine.pairs import close_pairs

    timings = {}
    results = {}
    for label, exact_max in (("exact", len(vectors)), ("IVF", 0)):
        started = time.perf_counter()
        results[label] = close_pairs(vectors, owners, threshold, exact_max=exact_max,
                                     nprobe=settings.FACE_ENGINE.index_nprobe)
        timings[label] = time.perf_counter() - started
    exact = set(zip(results["exact"].label_a.tolist(), results["exact"].label_b.tolist(), strict=True))
    ivf = set(zip(results["IVF"].label_a.tolist(), results["IVF"].label_b.tolist(), strict=True))
    share = len(exact & ivf) / len(exact) if exact else 1.0
    print(f"Search alone at {threshold}: exact {timings['exact']:.2f} s, IVF (nprobe "
          f"{settings.FACE_ENGINE.index_nprobe}) {timings['IVF']:.2f} s finding {share:.2%} of the exact pairs")


if __name__ == "__main__":
    sys.exit(main())
