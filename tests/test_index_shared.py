"""One index per machine (core/index/shared.py): processes open the machine's snapshot instead of
building their own, apply the change log on top of it, write a new one only when theirs is too old
for the log, and an erased person's embeddings leave the snapshot files."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from core.index import holder
from core.index.holder import IndexCache
from core.index.log import index_log_compact, index_log_state
from core.models import IndexChange, IndexLogState
from face_engine.index.shared import META, MappedVectorStore
from people.services import person_create, person_delete
from tests.processes import ROOT, service_env
from tests.test_index_log import add_faces, age, face_ids_of, nearest, unit_vectors

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def shared(settings, tmp_path, monkeypatch):
    """FACE_INDEX_SHARED_DIR on, and a count of the full builds made from the database."""
    settings.FACE_INDEX_SHARED_DIR = str(tmp_path / "index")
    builds = []
    real = holder._build

    def counted(previous):
        builds.append(1)
        return real(previous)

    monkeypatch.setattr(holder, "_build", counted)
    return tmp_path / "index", builds


def snapshots(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def test_the_second_process_opens_the_first_ones_snapshot(shared):
    folder, builds = shared
    person = person_create(name="someone")
    vectors = unit_vectors(4)
    ids = add_faces(person, vectors)
    first, second = IndexCache(), IndexCache()  # two processes' holders
    one, two = first.get(), second.get()
    assert len(builds) == 1 and len(snapshots(folder)) == 1
    assert isinstance(one._store, MappedVectorStore) and isinstance(two._store, MappedVectorStore)
    assert face_ids_of(one) == face_ids_of(two) == set(ids)
    # Writes after the snapshot: applied in place by each, no new snapshot.
    later = unit_vectors(2)
    new_ids = add_faces(person_create(name="later"), later)
    assert [nearest(first.get(), v).face_id for v in later] == new_ids
    assert [nearest(second.get(), v).face_id for v in later] == new_ids
    assert len(builds) == 1 and first.get() is one and second.get() is two
    assert second.status()["shared_snapshot_seq"] == first.status()["shared_snapshot_seq"]


def test_an_erased_persons_embeddings_leave_the_snapshot_files(shared):
    folder, builds = shared
    gone, stays = person_create(name="erased"), person_create(name="stays")
    gone_ids = add_faces(gone, unit_vectors(3))
    stay_ids = add_faces(stays, unit_vectors(2))
    cache = IndexCache()
    index = cache.get()
    old = snapshots(folder)
    person_delete(person=gone)  # asks every process for a new snapshot
    assert IndexChange.objects.order_by("-seq").values_list("kind", flat=True)[0] == IndexChange.Kind.RELOAD
    assert face_ids_of(cache.get()) == set(stay_ids)  # at once, from the log
    cache._rebuild_thread.join(60)
    rebuilt = cache.get()
    assert rebuilt is not index and face_ids_of(rebuilt) == set(stay_ids)
    new = snapshots(folder)
    assert len(new) == 1 and new != old and len(builds) == 2
    with np.load(folder / new[0] / META) as meta:
        assert not set(meta["face_ids"].tolist()) & set(gone_ids)


def test_a_snapshot_behind_the_compacted_log_or_of_another_epoch_is_not_used(shared):
    folder, builds = shared
    person = person_create(name="someone")
    add_faces(person, unit_vectors(2))
    IndexCache().get()
    assert len(builds) == 1
    # The additions after the snapshot compacted away: it could not be brought up to date.
    add_faces(person, unit_vectors(1))
    age(IndexChange.objects.all(), hours=48)
    index_log_compact()
    assert index_log_state()[1] > int(snapshots(folder)[0].rsplit("-", 1)[1])
    fresh = IndexCache().get()
    assert len(builds) == 2 and len(fresh) == 3
    # The same database name created again (a new epoch): its snapshots are its own.
    IndexLogState.objects.filter(pk=1).update(epoch="0" * 16)
    IndexCache().get()
    assert len(builds) == 3 and len(snapshots(folder)) == 2


def test_a_damaged_snapshot_is_built_again_not_served(shared):
    folder, builds = shared
    add_faces(person_create(name="someone"), unit_vectors(2))
    IndexCache().get()
    (folder / snapshots(folder)[0] / META).write_bytes(b"not a zip")
    assert len(IndexCache().get()) == 2
    assert len(builds) == 2 and len(snapshots(folder)) == 1


PROBE = """
import json, django
django.setup()
from core.index.holder import index_cache
index = index_cache.get()
maps = sorted({line.split()[-1] for line in open("/proc/self/maps") if line.rstrip().endswith("vectors.faiss")})
print(json.dumps({"faces": len(index), "maps": maps, "seq": index_cache.status()["shared_snapshot_seq"]}))
"""


def test_processes_of_a_machine_map_the_same_file(settings, tmp_path):
    """Two real processes (the production settings, which share by default) on this test's database."""
    add_faces(person_create(name="someone"), unit_vectors(5))
    env = service_env(settings)
    seen = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        seen.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert seen[0]["faces"] == seen[1]["faces"] == 5
    assert seen[0]["maps"] == seen[1]["maps"] and len(seen[0]["maps"]) == 1
    assert seen[0]["maps"][0].startswith(env["FACE_INDEX_SHARED_DIR"])
