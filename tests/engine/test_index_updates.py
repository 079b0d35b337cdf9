"""GalleryIndex updated in place: after any sequence of writes it answers as a fresh snapshot of
the same final state would (flat, IVF over the same cells, and the accelerator path on the CPU),
and searches running while writes arrive always see one whole state or the next."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from face_engine.index import GalleryIndex
from face_engine.index.galleries import BITMAP_MIN
from face_engine.types import EMBEDDING_DIM
from tests.engine.test_index import assert_same_matches, brute_force, unit_vectors
from tests.engine.test_index_negatives import screened

GALLERIES = (None, 1, 2, 3, 404)


class Model:
    """The state the writes describe, in plain Python: what a fresh snapshot is built from."""

    def __init__(self) -> None:
        self.faces: dict[int, tuple[int, np.ndarray]] = {}
        self.galleries: dict[int, set[int]] = {}
        self.negatives: dict[int, tuple[int, np.ndarray]] = {}

    def upsert_faces(self, ids, people, vectors):
        self.faces.update({int(f): (int(p), v) for f, p, v in zip(ids, people, vectors, strict=True)})

    def remove_faces(self, ids):
        for f in ids:
            self.faces.pop(int(f), None)

    def remove_people(self, people):
        gone = {int(p) for p in people}
        self.faces = {f: pv for f, pv in self.faces.items() if pv[0] not in gone}
        self.negatives = {n: pv for n, pv in self.negatives.items() if pv[0] not in gone}
        for p in gone:
            self.galleries.pop(p, None)

    def set_person_galleries(self, person, galleries):
        self.galleries[int(person)] = set(galleries)

    def remove_gallery(self, gallery):
        for galleries in self.galleries.values():
            galleries.discard(gallery)

    def upsert_negatives(self, ids, people, vectors):
        self.negatives.update({int(n): (int(p), v) for n, p, v in zip(ids, people, vectors, strict=True)})

    def remove_negatives(self, ids):
        for n in ids:
            self.negatives.pop(int(n), None)

    def arrays(self, table):
        ids = np.fromiter(table, dtype=np.int64, count=len(table))
        people = np.array([table[i][0] for i in ids.tolist()], dtype=np.int64)
        vectors = np.array([table[i][1] for i in ids.tolist()], dtype=np.float32).reshape(-1, EMBEDDING_DIM)
        return ids, people, vectors

    def snapshot(self, **options) -> GalleryIndex:
        faces, people, vectors = self.arrays(self.faces)
        neg_ids, neg_people, neg_vectors = self.arrays(self.negatives)
        return GalleryIndex(faces, people, vectors, {p: sorted(g) for p, g in self.galleries.items()},
                            negative_ids=neg_ids, negative_person_ids=neg_people, negative_embeddings=neg_vectors,
                            **options)


def both(model: Model, index: GalleryIndex, method: str, *args) -> None:
    getattr(model, method)(*args)
    getattr(index, method)(*args)


def assert_same_index(index: GalleryIndex, fresh: GalleryIndex, queries: np.ndarray, k: int = 5) -> None:
    assert (len(index), index.person_count, index.negative_count) == (
        len(fresh), fresh.person_count, fresh.negative_count)
    assert sorted(zip(index.face_ids.tolist(), index.person_ids.tolist(), strict=True)) == sorted(
        zip(fresh.face_ids.tolist(), fresh.person_ids.tolist(), strict=True))
    for gallery in GALLERIES:
        if gallery is not None:
            assert index.gallery_size(gallery) == fresh.gallery_size(gallery), gallery
        for negatives in (True, False):
            assert_same_matches(index.search(queries, k, gallery_id=gallery, negatives=negatives),
                                fresh.search(queries, k, gallery_id=gallery, negatives=negatives))


def start(rng: np.random.Generator, people: int, faces: int, **options) -> tuple[Model, GalleryIndex, np.ndarray]:
    """``people`` × ``faces`` clustered faces, galleries 1–3 (some people in two, some in none),
    a few negatives; returns the model, the index built from it, and queries near the people."""
    centres = unit_vectors(rng, people)
    model = Model()
    vectors = np.repeat(centres, faces, axis=0) + rng.normal(scale=0.03, size=(people * faces, EMBEDDING_DIM))
    model.upsert_faces(range(100, 100 + people * faces), np.repeat(np.arange(people), faces), vectors)
    for p in range(people):
        model.galleries[p] = {1 + p % 3} | ({2} if p % 5 == 0 else set()) if p % 7 else set()
    model.upsert_negatives(range(20), np.arange(20),
                           centres[:20] + rng.normal(scale=0.02, size=(20, EMBEDDING_DIM)))
    queries = (centres[rng.choice(people, 24)] + rng.normal(scale=0.03, size=(24, EMBEDDING_DIM))).astype(np.float32)
    return model, model.snapshot(**options), queries


def random_writes(rng: np.random.Generator, model: Model, index: GalleryIndex, steps: int) -> None:
    """Every kind of write, absent ids and repeats included."""
    next_face = max(model.faces) + 1
    for step in range(steps):
        live = list(model.faces)
        people = sorted({p for p, _ in model.faces.values()})
        kind = step % 8
        if kind in (0, 1):  # new faces: of known people, and of a new person
            n = int(rng.integers(1, 6))
            owners = rng.choice(people, n) if kind == 0 else np.full(n, 50_000 + step)
            both(model, index, "upsert_faces", np.arange(next_face, next_face + n), owners,
                 unit_vectors(rng, n))
            next_face += n
        elif kind == 2:  # replaced faces, some moving to another person, one id twice (the last wins)
            ids = list(rng.choice(live, 3, replace=False))
            ids.append(ids[0])
            write = (ids, rng.choice(people, 4), unit_vectors(rng, 4))
            both(model, index, "upsert_faces", *write)
            both(model, index, "upsert_faces", *write)  # a replay: the faces are as written, left be
        elif kind == 3:
            both(model, index, "remove_faces", [*rng.choice(live, 4, replace=False), 999_999_999])
        elif kind == 4:
            both(model, index, "remove_people", [int(rng.choice(people)), 777_777])
        elif kind == 5:
            person = int(rng.choice(people + [88_888]))  # someone without faces too
            both(model, index, "set_person_galleries", person, [int(g) for g in rng.choice([1, 2, 3], 2)])
        elif kind == 6:
            both(model, index, "upsert_negatives", [int(rng.integers(0, 40)), 500 + step],
                 rng.choice(people, 2), unit_vectors(rng, 2))
        else:
            both(model, index, "remove_negatives", [int(rng.integers(0, 40)), 12_345])
    both(model, index, "remove_gallery", 3)


@pytest.mark.parametrize(("exact_max", "people", "codec"), [(100_000, 300, "flat"), (500, 700, "flat"),
                                                            (500, 700, "sq8")], ids=["flat", "ivf", "ivf-sq8"])
def test_writes_leave_the_index_as_a_fresh_snapshot_of_the_same_state(exact_max, people, codec):
    rng = np.random.default_rng(21)
    model, index, queries = start(rng, people, 4, exact_max=exact_max, codec=codec)
    assert index.exact == (exact_max > people * 4) and index._store.lossy == (codec == "sq8")
    for _ in range(3):
        random_writes(rng, model, index, 40)
        # The same IVF cells and scalar ranges (trained reused): both search and encode alike, equal answers.
        fresh = model.snapshot(exact_max=exact_max, trained=index.trained, codec=codec)
        assert_same_index(index, fresh, queries)
        assert index.rebuild_reason is None
    if index.exact:
        faces, owners, vectors = model.arrays(model.faces)
        assert_same_matches(index.search(queries, 5, negatives=False), brute_force(queries, faces, owners, vectors, 5))


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_the_accelerator_path_updates_too(device):
    """TorchExactSearch grows, masks removed rows and answers as FAISS does (on the CPU in CI)."""
    from face_engine.sessions.torch_session import TorchExactSearch, cuda_available

    if device == "cuda" and not cuda_available():
        pytest.skip("no CUDA device")
    rng = np.random.default_rng(22)
    model, index, queries = start(rng, 200, 3, device_search=lambda v: TorchExactSearch(v, device, chunk=7))
    random_writes(rng, model, index, 60)
    n = 1500  # past the tensor's capacity: it doubles
    both(model, index, "upsert_faces", np.arange(2_000_000, 2_000_000 + n), rng.integers(0, 200, n),
         unit_vectors(rng, n))
    assert_same_index(index, model.snapshot(), queries)
    # k past the live faces: the masked rows never come back.
    everyone = index.search(queries[:2], 10_000, negatives=False)
    assert all(len(found) == index.person_count for found in everyone)


def test_a_face_moves_to_another_person_and_their_galleries():
    rng = np.random.default_rng(23)
    vectors = unit_vectors(rng, 6)
    index = GalleryIndex([1, 2, 3, 4, 5, 6], [10, 10, 20, 20, 30, 30], vectors, {10: [1], 20: [2]})
    index.upsert_faces([2], [20], vectors[1:2])
    [[match]] = index.search(vectors[1:2], 1)
    assert (match.face_id, match.person_id) == (2, 20)
    assert (index.gallery_size(1), index.gallery_size(2), index.person_count, len(index)) == (1, 3, 3, 6)
    assert [m.person_id for m in index.search(vectors[1:2], 1, gallery_id=2)[0]] == [20]
    index.upsert_faces([1], [40], vectors[0:1])  # person 10's last face leaves: 10 is gone
    assert (index.person_count, index.gallery_size(1)) == (3, 0)
    assert index.search(vectors[0:1], 1, gallery_id=1) == [[]]


def test_absent_ids_and_repeated_writes_change_nothing():
    rng = np.random.default_rng(24)
    model, index, queries = start(rng, 60, 3)
    index.remove_faces([5, 6, 999])
    index.remove_people([4242])
    index.remove_negatives([777])
    index.remove_gallery(404)
    index.upsert_faces([], [], np.zeros((0, EMBEDDING_DIM), np.float32))
    for _ in range(2):
        both(model, index, "remove_faces", [100, 101])
        both(model, index, "remove_people", [7])
        both(model, index, "set_person_galleries", 8, [3])
        both(model, index, "upsert_negatives", [3], [9], queries[:1])
    assert_same_index(index, model.snapshot(), queries)


def test_replaying_the_same_faces_keeps_their_slots():
    """A change log applied again (after a rebuild) rewrites faces unchanged: no slot is spent,
    so the index does not come to ask for a rebuild."""
    rng = np.random.default_rng(25)
    vectors = unit_vectors(rng, 10)
    index = GalleryIndex(np.arange(10), np.arange(10), vectors)
    for _ in range(50):
        index.upsert_faces(np.arange(10), np.arange(10), vectors)
    assert index.rebuild_reason is None and len(index) == 10
    for _ in range(11):  # a real change each time: a new slot, the old one removed
        index.upsert_faces(np.arange(10), np.arange(10), unit_vectors(rng, 10))
    assert "removed faces" in index.rebuild_reason


def test_people_join_and_leave_galleries():
    rng = np.random.default_rng(26)
    vectors = unit_vectors(rng, 8)
    index = GalleryIndex(np.arange(4), [1, 1, 2, 2], vectors[:4], {1: [5]})
    index.set_person_galleries(3, [5, 6])  # no faces yet: nothing to find, but remembered
    assert (index.gallery_size(5), index.gallery_size(6)) == (2, 0)
    index.upsert_faces([10, 11], [3, 3], vectors[4:6])
    assert (index.gallery_size(5), index.gallery_size(6)) == (4, 2)
    assert {m.person_id for m in index.search(vectors[4:6], 5, gallery_id=6)[0]} == {3}
    index.set_person_galleries(1, [])
    assert index.gallery_size(5) == 2 and {m.person_id for m in index.search(vectors[0], 5, gallery_id=5)[0]} == {3}
    index.remove_gallery(6)
    index.upsert_faces([12], [3], vectors[6:7])  # a gallery removed stays removed
    assert (index.gallery_size(5), index.gallery_size(6)) == (3, 0)
    assert index.search(vectors[4:6], 5, gallery_id=6) == [[], []]
    index.remove_people([3])
    assert index.gallery_size(5) == 0 and index.person_count == 2


@pytest.mark.parametrize("exact_max", [100_000, 500], ids=["flat", "ivf"])
def test_a_large_gallery_filters_by_bitmap_and_back(exact_max):
    """Past BITMAP_MIN faces a gallery's filter is a bitmap over the slots; it follows every write,
    the index's growth, and becomes an array again when the gallery shrinks."""
    rng = np.random.default_rng(27)
    n = 600 + BITMAP_MIN * 4
    faces, owners = np.arange(n), np.r_[np.arange(600) // 2, rng.integers(0, 300, n - 600)]
    vectors = unit_vectors(rng, n)
    index = GalleryIndex(faces[:600], owners[:600], vectors[:600], {p: [1] for p in range(0, 300, 2)},
                         exact_max=exact_max, nprobe=10_000)  # every cell: IVF answers exactly
    index.upsert_faces(faces[600:], owners[600:], vectors[600:])  # the slots' capacity grows
    index.remove_faces(faces[600::3])
    keep = np.ones(n, dtype=bool)
    keep[600::3] = False
    faces, owners, vectors = faces[keep], owners[keep], vectors[keep]
    members = owners % 2 == 0
    queries = vectors[members][-20:] + rng.normal(scale=0.01, size=(20, EMBEDDING_DIM)).astype(np.float32)
    want = brute_force(queries, faces[members], owners[members], vectors[members], 3)
    assert_same_matches(index.search(queries, 3, gallery_id=1), want)
    assert index.gallery_size(1) == members.sum() > BITMAP_MIN
    for person in range(2, 300, 2):  # all but person 0 leave: back under a quarter of BITMAP_MIN
        index.set_person_galleries(person, [])
    assert index.gallery_size(1) == (owners == 0).sum()
    assert {m.person_id for r in index.search(queries, 3, gallery_id=1) for m in r} == {0}
    index.set_person_galleries(4, [1])
    back = np.isin(owners, [0, 4])
    assert_same_matches(index.search(queries, 3, gallery_id=1),
                        brute_force(queries, faces[back], owners[back], vectors[back], 3))


def test_negatives_are_added_replaced_and_removed():
    from tests.engine.test_index_negatives import FACES, PERSONS, near

    rng = np.random.default_rng(3)
    centres = unit_vectors(rng, PERSONS)
    vectors = np.concatenate([near(rng, c, FACES, 0.05) for c in centres])
    person_ids = np.repeat(np.arange(100, 100 + PERSONS, dtype=np.int64), FACES)
    face_ids = np.arange(len(vectors), dtype=np.int64) + 5000
    queries = np.concatenate([near(rng, centres[p], 4, 0.08) for p in range(10)])
    neg_people = np.repeat(np.arange(100, 110, dtype=np.int64), 2)
    neg_vectors = np.concatenate([near(rng, centres[p], 2, 0.06) for p in range(10)])
    index = GalleryIndex(face_ids, person_ids, vectors)
    index.upsert_negatives(np.arange(20) + 70, neg_people, neg_vectors)
    want = screened(queries, face_ids, person_ids, vectors, neg_people, neg_vectors, 3)
    assert_same_matches(index.search(queries, 3), want)
    index.upsert_negatives([70, 71], [129, 129], neg_vectors[:2])  # person 100's two now say "not 129"
    moved = neg_people.copy()
    moved[:2] = 129
    want = screened(queries, face_ids, person_ids, vectors, moved, neg_vectors, 3)
    assert_same_matches(index.search(queries, 3), want)
    index.remove_negatives(np.arange(20) + 70)
    assert index.negative_count == 0
    assert_same_matches(index.search(queries, 3), brute_force(queries, face_ids, person_ids, vectors, 3))


def test_rebuild_reasons():
    rng = np.random.default_rng(28)
    flat = GalleryIndex(np.arange(90), np.arange(90), unit_vectors(rng, 90), exact_max=100)
    assert flat.rebuild_reason is None
    flat.upsert_faces(np.arange(90, 110), np.arange(90, 110), unit_vectors(rng, 20))
    assert "past exact_max" in flat.rebuild_reason

    vectors = np.repeat(unit_vectors(rng, 250), 4, axis=0) + rng.normal(scale=0.03, size=(1000, EMBEDDING_DIM))
    ivf = GalleryIndex(np.arange(1000), np.arange(1000) // 4, vectors.astype(np.float32), exact_max=500)
    assert not ivf.exact and ivf.rebuild_reason is None
    ivf.remove_faces(np.arange(520))
    assert "within exact_max" in ivf.rebuild_reason

    grown = GalleryIndex(np.arange(1000), np.arange(1000) // 4, vectors.astype(np.float32), exact_max=500)
    grown.upsert_faces(np.arange(1000, 5000), np.arange(1000, 5000), unit_vectors(rng, 4000))
    assert "IVF cells" in grown.rebuild_reason

    churned = GalleryIndex(np.arange(100), np.arange(100), unit_vectors(rng, 100))
    churned.remove_faces(np.arange(40))
    churned.upsert_faces(np.arange(200, 215), np.arange(15), unit_vectors(rng, 15))
    assert churned.rebuild_reason is None  # 40 of 115 slots removed
    churned.remove_faces(np.arange(40, 60))
    assert "60 of 115 slots" in churned.rebuild_reason


def test_bad_writes_are_refused():
    index = GalleryIndex.empty()
    with pytest.raises(ValueError, match="same length"):
        index.upsert_faces([1, 2], [1], np.zeros((2, EMBEDDING_DIM), np.float32))
    with pytest.raises(ValueError, match="negative"):
        index.upsert_faces([-1], [1], np.zeros((1, EMBEDDING_DIM), np.float32))
    with pytest.raises(ValueError, match="same length"):
        index.upsert_negatives([1], [1, 2], np.zeros((1, EMBEDDING_DIM), np.float32))
    index.upsert_faces([1], [7], np.ones((1, EMBEDDING_DIM), np.float32))
    assert [m.person_id for m in index.search(np.ones(EMBEDDING_DIM, np.float32), 1)[0]] == [7]


@pytest.mark.parametrize("exact_max", [100_000, 500], ids=["flat", "ivf"])
def test_searches_during_writes_see_whole_states(exact_max):
    """40 faces move between two sets of owners, or go and come back, one write at a time, while
    three threads search them: every search sees all 40 with one set of owners, or none of them."""
    rng = np.random.default_rng(29)
    background = unit_vectors(rng, 800)
    movers = unit_vectors(rng, 40)
    ids = np.arange(10_000, 10_040)
    owners = {"a": np.arange(5000, 5040), "b": np.arange(6000, 6040)}
    index = GalleryIndex(np.arange(800), np.arange(800) // 2, background, exact_max=exact_max)
    index.upsert_faces(ids, owners["a"], movers)
    seen: dict[str, int] = {"a": 0, "b": 0, "gone": 0}
    errors: list[BaseException] = []
    done = threading.Event()

    def search() -> None:
        try:
            while not done.is_set():
                found = index.search(movers, 1, negatives=False)
                tops = [(r[0].face_id, r[0].person_id) for r in found]
                if all(face < 10_000 for face, _ in tops):
                    seen["gone"] += 1
                    continue
                people = np.array([person for _, person in tops])
                assert [face for face, _ in tops] == ids.tolist()
                state = "a" if np.array_equal(people, owners["a"]) else "b"
                assert np.array_equal(people, owners[state]), people
                seen[state] += 1
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=search) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for step in range(150):
            if step % 3 == 2:
                index.remove_faces(ids)
            index.upsert_faces(ids, owners["ab"[step % 2]], movers)
            index.set_person_galleries(int(step % 400), [1 + step % 2])
    finally:
        done.set()
        for thread in threads:
            thread.join()
    assert not errors, errors[0]
    assert sum(seen.values()) > 0
