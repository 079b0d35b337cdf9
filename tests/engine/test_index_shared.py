"""The index shared by a machine's processes (face_engine/index/shared.py): a snapshot written once
and memory-mapped, this process's changes since it kept beside it. After any writes it answers as
a fresh in-memory index of the same state, and its vectors stay in the file's pages."""

from __future__ import annotations

import numpy as np
import pytest

from face_engine.index import GalleryIndex
from face_engine.index.galleries import BITMAP_MIN
from face_engine.index.shared import DELTA_MIN, VECTORS, MappedVectorStore, open_snapshot, write_snapshot
from face_engine.types import EMBEDDING_DIM
from tests.engine.test_index import assert_same_matches, brute_force, unit_vectors
from tests.engine.test_index_updates import assert_same_index, random_writes, start

EVERY_CELL = 10_000  # nprobe past every IVF cell: IVF answers exactly, so the two sides compare


def shared_copy(tmp_path, model, **options) -> GalleryIndex:
    folder = tmp_path / "snapshot"
    folder.mkdir()
    write_snapshot(folder, model.snapshot(**options), {p: sorted(g) for p, g in model.galleries.items()})
    return open_snapshot(folder, nprobe=options.get("nprobe", 32))


@pytest.mark.parametrize(("exact_max", "people"), [(100_000, 300), (500, 700)], ids=["flat", "ivf"])
def test_a_mapped_snapshot_with_writes_answers_as_a_fresh_index(tmp_path, exact_max, people):
    rng = np.random.default_rng(31)
    model, _, queries = start(rng, people, 4, exact_max=exact_max)
    index = shared_copy(tmp_path, model, exact_max=exact_max, nprobe=EVERY_CELL)
    assert isinstance(index._store, MappedVectorStore) and index.exact == (exact_max > people * 4)
    assert_same_index(index, model.snapshot(exact_max=exact_max, nprobe=EVERY_CELL), queries)
    for _ in range(3):
        random_writes(rng, model, index, 40)  # removals from the snapshot and from the additions
        assert_same_index(index, model.snapshot(exact_max=exact_max, nprobe=EVERY_CELL), queries)
    assert index._store.delta_count > 0 and index._store._base_removed > 0
    assert index.rebuild_reason is None
    faces, owners, vectors = model.arrays(model.faces)
    assert_same_matches(index.search(queries, 5, negatives=False), brute_force(queries, faces, owners, vectors, 5))


@pytest.mark.parametrize("exact_max", [100_000, 500], ids=["flat", "ivf"])
def test_a_large_gallery_and_removed_snapshot_faces_filter_together(tmp_path, exact_max):
    """A gallery's bitmap selector and the snapshot's live-slot bitmap combine; a gallery's faces
    added since the snapshot are found among the additions."""
    rng = np.random.default_rng(32)
    n = BITMAP_MIN * 3
    faces, owners, vectors = np.arange(n), np.arange(n) // 2, unit_vectors(rng, n)
    folder = tmp_path / "s"
    folder.mkdir()
    members = {p: [1] for p in range(0, n // 2, 2)}
    write_snapshot(folder, GalleryIndex(faces, owners, vectors, members, exact_max=exact_max), members)
    index = open_snapshot(folder, nprobe=EVERY_CELL)
    index.remove_faces(faces[::3])
    extra = unit_vectors(rng, 50)
    index.upsert_faces(np.arange(n, n + 50), np.arange(50) * 2, extra)  # members' new faces
    keep = np.ones(n, dtype=bool)
    keep[::3] = False
    all_faces, all_owners = np.r_[faces[keep], np.arange(n, n + 50)], np.r_[owners[keep], np.arange(50) * 2]
    all_vectors = np.r_[vectors[keep], extra]
    queries = np.r_[extra[:10], vectors[:30]] + rng.normal(scale=0.01, size=(40, EMBEDDING_DIM)).astype(np.float32)
    in_gallery = all_owners % 2 == 0
    assert index.gallery_size(1) == in_gallery.sum() > BITMAP_MIN
    assert_same_matches(index.search(queries, 3, gallery_id=1),
                        brute_force(queries, all_faces[in_gallery], all_owners[in_gallery], all_vectors[in_gallery], 3))
    assert_same_matches(index.search(queries, 3), brute_force(queries, all_faces, all_owners, all_vectors, 3))


def test_replays_keep_slots_and_changes_past_a_tenth_ask_for_a_new_snapshot(tmp_path):
    rng = np.random.default_rng(33)
    model, _, queries = start(rng, 100, 2)
    index = shared_copy(tmp_path, model)
    store = index._store
    ids, people, vectors = model.arrays(model.faces)
    index.upsert_faces(ids[:10], people[:10], vectors[:10])  # read back from the mapped file: unchanged
    assert store.delta_count == 0
    n = DELTA_MIN + 1
    index.upsert_faces(np.arange(10_000_000, 10_000_000 + n), rng.integers(0, 100, n), unit_vectors(rng, n))
    assert store.delta_count == n
    assert "changed since the shared snapshot" in index.rebuild_reason


def test_vectors_stay_in_the_files_pages(tmp_path):
    """The mapped part is file-backed: a search reads the file's pages (shared by every process
    of the machine through the page cache) instead of a private copy."""
    rng = np.random.default_rng(34)
    n = 60_000  # 30 MiB of vectors
    vectors = unit_vectors(rng, n)
    folder = tmp_path / "big"
    folder.mkdir()
    write_snapshot(folder, GalleryIndex(np.arange(n), np.arange(n) // 3, vectors), {})
    del vectors
    before = _anonymous_kib()
    index = open_snapshot(folder, nprobe=32)
    index.search(unit_vectors(rng, 8), 5)  # a flat index: every row read
    mapped = [line for line in open("/proc/self/maps") if line.rstrip().endswith(str(folder / VECTORS))]
    assert mapped, "vectors.faiss is not memory-mapped"
    grown = _anonymous_kib() - before
    size_kib = (folder / VECTORS).stat().st_size // 1024
    assert grown < size_kib // 4, f"{grown} KiB of private memory for {size_kib} KiB of vectors"


def test_a_truncated_snapshot_is_refused(tmp_path):
    rng = np.random.default_rng(35)
    model, _, _ = start(rng, 20, 2)
    shared_copy(tmp_path, model)
    meta = tmp_path / "snapshot" / "meta.npz"
    meta.write_bytes(meta.read_bytes()[:200])
    with pytest.raises(Exception):  # noqa: B017, PT011 - numpy's own error for a cut zip
        open_snapshot(tmp_path / "snapshot", nprobe=32)


def _anonymous_kib() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    raise AssertionError("no RssAnon in /proc/self/status")


def test_an_sq8_snapshot_maps_and_answers_as_its_in_memory_index(tmp_path):
    rng = np.random.default_rng(36)
    model, _, queries = start(rng, 700, 4)
    built = model.snapshot(exact_max=500, nprobe=EVERY_CELL, codec="sq8")
    folder = tmp_path / "sq8"
    folder.mkdir()
    write_snapshot(folder, built, {p: sorted(g) for p, g in model.galleries.items()})
    mapped = open_snapshot(folder, nprobe=EVERY_CELL)
    assert mapped._store.lossy and not mapped.exact
    assert_same_index(mapped, built, queries)
    ids, people, vectors = model.arrays(model.faces)
    mapped.upsert_faces(ids[:5], people[:5], vectors[:5])  # a replay: read back within the codec's step
    assert mapped._store.delta_count == 0
