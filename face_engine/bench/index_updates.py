"""Index updates benchmark: what one write costs a GalleryIndex applied in place, and what writes
arriving at a steady rate do to search latency, against a full snapshot build.

    python -m face_engine.bench.index_updates [--faces 1000000] [--writes 300] [--rate 10] [--seconds 10]

The synthetic gallery of face_engine.bench.search (five faces around each person), each person in
one of 50 galleries. Each kind of write is timed ``--writes`` times; then single queries run for
``--seconds`` quietly and ``--seconds`` while another thread applies ``--rate`` writes a second
(the kinds in turn), half of them unfiltered and half within one gallery.
"""

from __future__ import annotations

import argparse
import itertools
import threading
import time
from collections.abc import Callable

import numpy as np

from face_engine.bench.search import SPREAD, synthetic_gallery
from face_engine.index import GalleryIndex
from face_engine.settings import EngineSettings
from face_engine.types import EMBEDDING_DIM

GALLERIES = 50


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _ms(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q) * 1000.0)


class Writes:
    """One write of each kind on demand, on live ids, as the change log would bring them."""

    def __init__(self, index: GalleryIndex, faces: int, people: int, seed: int) -> None:
        self.index = index
        self.rng = np.random.default_rng(seed)
        self.next_face = faces + seed * 10_000_000
        self.next_negative = seed * 10_000_000
        self.negatives: list[int] = []
        self.faces = faces
        self.people = people
        self.removed: set[int] = set()

    def _vector(self) -> np.ndarray:
        vector = self.rng.normal(size=(1, EMBEDDING_DIM)).astype(np.float32)
        return vector / np.linalg.norm(vector)

    def _person(self) -> int:
        while (person := int(self.rng.integers(self.people))) in self.removed:
            pass
        return person

    def face_added(self) -> None:
        self.index.upsert_faces([self.next_face], [self._person()], self._vector())
        self.next_face += 1

    def face_replaced(self) -> None:  # a new vector and another person: a face re-encoded or moved
        self.index.upsert_faces([int(self.rng.integers(self.faces))], [self._person()], self._vector())

    def face_removed(self) -> None:
        self.index.remove_faces([int(self.rng.integers(self.faces))])

    def person_galleries(self) -> None:
        self.index.set_person_galleries(self._person(), [int(g) for g in self.rng.integers(1, GALLERIES + 1, 2)])

    def person_removed(self) -> None:
        person = self._person()
        self.removed.add(person)
        self.index.remove_people([person])

    def negative_added(self) -> None:
        self.index.upsert_negatives([self.next_negative], [self._person()], self._vector())
        self.negatives.append(self.next_negative)
        self.next_negative += 1

    def negative_removed(self) -> None:
        if self.negatives:
            self.index.remove_negatives([self.negatives.pop(int(self.rng.integers(len(self.negatives))))])

    def kinds(self) -> dict[str, Callable[[], None]]:
        return {"face added": self.face_added, "face replaced": self.face_replaced,
                "face removed": self.face_removed, "person's galleries": self.person_galleries,
                "person removed": self.person_removed, "negative added": self.negative_added,
                "negative removed": self.negative_removed}


def searches(index: GalleryIndex, probe: np.ndarray, seconds: float) -> tuple[list[float], list[float]]:
    """Single queries for ``seconds``, alternately unfiltered and within gallery 1."""
    plain: list[float] = []
    gallery: list[float] = []
    stop = time.perf_counter() + seconds
    for i in itertools.count():
        if time.perf_counter() >= stop:
            break
        query = probe[i % len(probe)][None, :]
        start = time.perf_counter()
        index.search(query, 3, gallery_id=None if i % 2 == 0 else 1)
        (plain if i % 2 == 0 else gallery).append(time.perf_counter() - start)
    return plain, gallery


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--faces", type=int, default=1_000_000)
    parser.add_argument("--writes", type=int, default=300, help="timed writes of each kind")
    parser.add_argument("--rate", type=float, default=10.0, help="writes a second during the searches")
    parser.add_argument("--seconds", type=float, default=10.0, help="of searches, quiet and with writes")
    parser.add_argument("--nprobe", type=int, default=EngineSettings.index_nprobe)
    parser.add_argument("--exact-max", type=int, default=EngineSettings.index_exact_max)
    parser.add_argument("--device", help="exact search on this torch device (e.g. cuda) instead of FAISS")
    args = parser.parse_args(argv)
    device_search = None
    if args.device:
        from face_engine.sessions.torch_session import TorchExactSearch

        def device_search(vectors: np.ndarray) -> TorchExactSearch:
            return TorchExactSearch(vectors, args.device)

    centres, vectors, person_ids = synthetic_gallery(args.faces)
    people = len(centres)
    memberships = {p: [1 + p % GALLERIES] for p in range(people)}
    rng = np.random.default_rng(1)
    probe = (centres[rng.choice(people, size=2000)]
             + rng.normal(scale=SPREAD, size=(2000, EMBEDDING_DIM))).astype(np.float32)
    before = rss_mib()
    start = time.perf_counter()
    index = GalleryIndex(np.arange(args.faces), person_ids, vectors, memberships, exact_max=args.exact_max,
                         nprobe=args.nprobe, device_search=device_search)
    build = time.perf_counter() - start
    after = rss_mib()
    start = time.perf_counter()
    again = GalleryIndex(np.arange(args.faces), person_ids, vectors, memberships, exact_max=args.exact_max,
                         nprobe=args.nprobe, trained=index.trained, device_search=device_search)
    rebuild = time.perf_counter() - start
    del again
    kind = f"exact on {args.device}" if args.device else "exact" if index.exact else f"IVF, nprobe {args.nprobe}"
    print(f"{args.faces:,} faces of {people:,} people in {GALLERIES} galleries ({kind})")
    print(f"snapshot build: {build:.2f} s (k-means included), {rebuild:.2f} s (trained cells reused)")
    print(f"memory: process RSS {after:,.0f} MiB, of which the index {after - before:,.0f} MiB "
          f"(RSS after its build less before; the input arrays, {vectors.nbytes / 2**20:,.0f} MiB, are not in it)")
    if args.device and args.device.startswith("cuda"):
        import torch

        print(f"GPU memory allocated: {torch.cuda.memory_allocated() / 2**20:,.0f} MiB")

    writes = Writes(index, args.faces, people, seed=1)
    print(f"\n{'one write':<20} {'p50':>9} {'p99':>9} {'max':>9}")
    for name, write in writes.kinds().items():
        times = []
        for _ in range(args.writes):
            start = time.perf_counter()
            write()
            times.append(time.perf_counter() - start)
        print(f"{name:<20} {_ms(times, 50):>7.3f}ms {_ms(times, 99):>7.3f}ms {max(times) * 1000:>7.3f}ms", flush=True)

    searches(index, probe, 1.0)  # warm
    quiet_plain, quiet_gallery = searches(index, probe, args.seconds)
    done = threading.Event()
    applied: list[float] = []

    def writer() -> None:
        background = Writes(index, args.faces, people, seed=2)
        cycle = itertools.cycle(background.kinds().values())
        tick = time.perf_counter()
        while not done.is_set():
            tick += 1.0 / args.rate
            done.wait(max(0.0, tick - time.perf_counter()))
            start = time.perf_counter()
            next(cycle)()
            applied.append(time.perf_counter() - start)

    thread = threading.Thread(target=writer)
    thread.start()
    busy_plain, busy_gallery = searches(index, probe, args.seconds)
    done.set()
    thread.join()
    print(f"\n{'search (k=3)':<26} {'n':>6} {'p50':>9} {'p99':>9}")
    for label, quiet, busy in (("unfiltered", quiet_plain, busy_plain),
                               (f"in a gallery of ~{args.faces // GALLERIES:,}", quiet_gallery, busy_gallery)):
        print(f"{label + ', quiet':<26} {len(quiet):>6} {_ms(quiet, 50):>7.3f}ms {_ms(quiet, 99):>7.3f}ms")
        print(f"{label + f', {args.rate:g} writes/s':<26} {len(busy):>6} {_ms(busy, 50):>7.3f}ms "
              f"{_ms(busy, 99):>7.3f}ms  p99 {_ms(busy, 99) / _ms(quiet, 99):.2f}× quiet")
    print(f"{len(applied)} writes applied meanwhile: p50 {_ms(applied, 50):.3f} ms, p99 {_ms(applied, 99):.3f} ms")
    print(f"now {len(index):,} faces; rebuild wanted: {index.rebuild_reason or 'no'}")


if __name__ == "__main__":
    main()
