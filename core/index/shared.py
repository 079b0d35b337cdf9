"""The machine's shared index: snapshots in ``FACE_INDEX_SHARED_DIR`` that every process of the
machine memory-maps (face_engine/index/shared.py) instead of building its own copy.

A process that needs a full index (its first load, or a rebuild) takes the newest snapshot of its
database and embedding model that is newer than what it holds and that the change log can still
bring up to date (its seq not behind the compacted additions). Only when there is none does it
build one, under a file lock, so that processes starting together wait for the first build rather
than each making its own; it writes the snapshot into a temporary folder and renames it into place,
so a reader never sees half of one, then removes the older ones: a removed snapshot stays readable
by the processes that still map it (the pages live until they let go), and it no longer holds on
disk the embeddings of people deleted since (erasure asks every process for a rebuild, which
writes a new snapshot and removes the old one).

Snapshots are named ``<key>-<seq>``: the key hashes the database's identity, the log's epoch (a
database created again under the same name starts a new one), the model and the index's shape
settings (FACE_INDEX_EXACT_MAX, FACE_INDEX_CODEC); the seq is the log's
when the snapshot was read, every change after it being applied by each process as usual.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import gc
import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

from core.index.log import index_log_state
from core.models import IndexLogState
from face_engine.index import GalleryIndex
from face_engine.index.shared import open_snapshot, write_snapshot

logger = logging.getLogger(__name__)
_NAME = re.compile(r"^(?P<key>[0-9a-f]{16})-(?P<seq>\d{1,19})$")
Build = Callable[[], tuple[GalleryIndex, dict[int, list[int]]]]


def shared_dir() -> Path | None:
    folder = settings.FACE_INDEX_SHARED_DIR
    return Path(folder) if folder else None


def shared_index(build: Build, *, model: str, newer_than: int) -> tuple[GalleryIndex, int]:
    """A memory-mapped index and the log seq of its snapshot (> ``newer_than``); ``build()`` makes
    the index and its memberships from the database when no usable snapshot exists."""
    root = shared_dir()
    assert root is not None
    root.mkdir(mode=0o700, parents=True, exist_ok=True)  # the snapshots hold embeddings: this user's only
    key = _key(model)
    found = _open_newest(root, key, newer_than)
    if found is not None:
        return found
    with _locked(root / f"{key}.lock"):
        found = _open_newest(root, key, newer_than)  # written while this process waited
        if found is not None:
            return found
        start = time.perf_counter()
        seq = index_log_state()[0]  # read before the snapshot: the changes after it are applied after
        index, memberships = build()
        folder = _publish(root, key, seq, index, memberships)
        del index  # this process maps the written copy like every other one
        _give_back_freed_memory()
        logger.info("shared face index snapshot %s written in %.2f s", folder.name, time.perf_counter() - start)
        return open_snapshot(folder, nprobe=settings.FACE_ENGINE.index_nprobe), seq


def _give_back_freed_memory() -> None:
    """The build's freed heap (the rows read from the database, FAISS's growth) returned to the
    system: glibc keeps it otherwise, and the builder would hold most of a private copy's memory
    after all (measured at 1M faces: 627 MiB more than a process that only maps the snapshot)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _key(model: str) -> str:
    database = settings.DATABASES["default"]
    state, _ = IndexLogState.objects.get_or_create(pk=1)
    engine = settings.FACE_ENGINE  # an index's shape: processes configured alike share it
    identity = "|".join(str(part) for part in (database["ENGINE"], database["NAME"], database.get("HOST", ""),
                                               database.get("PORT", ""), state.epoch, model,
                                               engine.index_exact_max, engine.index_codec))
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def _snapshots(root: Path, key: str) -> list[tuple[int, Path]]:
    """This key's complete snapshots, newest first."""
    found = []
    for path in root.iterdir():
        match = _NAME.match(path.name)
        if match and match["key"] == key:
            found.append((int(match["seq"]), path))
    return sorted(found, reverse=True)


def _open_newest(root: Path, key: str, newer_than: int) -> tuple[GalleryIndex, int] | None:
    upserts_compacted = index_log_state()[1]
    for seq, path in _snapshots(root, key):
        if seq <= newer_than or seq < upserts_compacted:
            return None  # older ones are older still; a fresh build is owed
        try:
            return open_snapshot(path, nprobe=settings.FACE_ENGINE.index_nprobe), seq
        except FileNotFoundError:  # removed by a newer snapshot's writer between listing and opening
            continue
        except (OSError, ValueError, RuntimeError) as exc:  # a damaged one: build afresh, never serve it
            logger.warning("shared face index snapshot %s unreadable (%s): building another", path.name, exc)
            return None
    return None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, or when the process dies
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _publish(root: Path, key: str, seq: int, index: GalleryIndex, memberships: dict[int, list[int]]) -> Path:
    target = root / f"{key}-{seq}"
    work = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
    try:
        write_snapshot(work, index, memberships)
        for path in work.iterdir():  # on disk before the rename makes the snapshot visible
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
        if target.exists():  # the same seq written before (a damaged copy): replaced
            shutil.rmtree(target)
        os.rename(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    for older_seq, path in _snapshots(root, key):
        if older_seq < seq:
            shutil.rmtree(path, ignore_errors=True)
    _sweep(root)
    return target


def _sweep(root: Path, *, temporary_s: float = 3600, foreign_days: float = 7) -> None:
    """Temporary folders left by a writer that died mid-way, and other keys' snapshots (another
    database's, a dropped model's, a recreated database's) written over ``foreign_days`` ago."""
    now = time.time()
    for path in root.iterdir():
        if not path.is_dir():
            continue
        age = now - path.stat().st_mtime
        if (path.name.startswith(".") and age > temporary_s) or (_NAME.match(path.name) and age > foreign_days * 86400):
            shutil.rmtree(path, ignore_errors=True)
