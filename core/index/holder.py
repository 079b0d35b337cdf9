"""This process's face index: read in full once, then kept in step with the database by applying the
change log (log.py) in place, a few milliseconds a write. A full rebuild happens only when it must
(a reload was asked for, the log was compacted past this process, the index's IVF cells no longer
suit its size) and runs on a thread of its own while the old index keeps answering; the new one
applies what was written meanwhile and takes its place in one reference swap."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection, connections

from core.errors import ServiceError
from core.index.log import (
    Change,
    Kind,
    appended_in_open_transaction,
    current_index_token,
    index_log_append,
    index_log_state,
)
from core.index.shared import shared_dir, shared_index
from core.index.sources import current_model_id, read_snapshot
from core.models import IndexChange
from face_engine.index import GalleryIndex
from face_engine.runtime import device_search
from face_engine.types import EMBEDDING_DIM

logger = logging.getLogger(__name__)
_COLUMNS = ("seq", "kind", "item_id", "person_id", "galleries", "embedding", "model")


class IndexUnavailable(ServiceError):
    """This process fell behind even the removals kept in the log: until its rebuild is done it
    cannot know who was deleted meanwhile, so it answers nobody rather than risk naming them."""

    def __init__(self) -> None:
        super().__init__("index_rebuilding", "This process is rebuilding its face index; try again shortly.",
                         status_code=503)
        self.headers = {"Retry-After": "5"}


def _sees_uncommitted_only() -> bool:
    """The outermost transaction is a test case's, which never commits: what the test wrote exists
    on this connection only."""
    return bool(connection.atomic_blocks) and getattr(connection.atomic_blocks[0], "_from_testcase", False)


def _on_another_connection(load) -> None:
    """Run ``load`` on a thread of its own, whose connection sees committed data only."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            load()
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller
            failure.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, name="face-index-load")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


class IndexCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._index: GalleryIndex | None = None
        self._token: str | None = None
        self._applied = 0  # the last change applied to self._index
        self._snapshot_seq = 0  # the log's seq when self._index's snapshot was read
        self._reload_seq = 0  # the last RELOAD seen: a rebuild's snapshot must not predate it
        self._unsafe = False
        self._rebuild_thread: threading.Thread | None = None
        self._rebuild_owed: str | None = None
        self.stats: dict[str, Any] = {}
        self._reset_stats()

    def _reset_stats(self) -> None:
        self.stats = {"changes_applied": 0, "last_apply_ms": 0.0, "rebuilds": 0, "last_rebuild_s": None,
                      "last_rebuild_reason": None, "shared_snapshot_seq": None}

    def get(self) -> GalleryIndex:
        """The index with every committed change applied: a cheap version check, then (when it
        moved) the changes since the last one applied. Inside a transaction of the caller's, the
        index as it stands (the caller's own changes are not committed yet)."""
        token = current_index_token()
        index = self._index
        # A transaction of the caller's that has written to the log sees its own changes, which are
        # not committed and may yet be rolled back: they must not enter the index.
        uncommitted = appended_in_open_transaction()
        if index is not None and (token == self._token or uncommitted):
            return self._usable(index)
        with self._lock:
            if self._index is None and uncommitted and not _sees_uncommitted_only():
                _on_another_connection(self._load_now)
            elif self._index is None:
                self._load_now()
            elif token != self._token:
                self._catch_up()
            self._token = token
            return self._usable(self._index)

    def current(self) -> GalleryIndex | None:
        """The index this process holds now, without checking the log (None before the first load,
        or while it is known to be unsafe): what a live stream matches against while the database
        is unreachable."""
        return None if self._unsafe else self._index

    def reload(self) -> GalleryIndex:
        """Ask every process (this one included) to rebuild its index in full, in the background;
        returns the index answering now."""
        from django.db import transaction

        with transaction.atomic():
            index_log_append([Change(kind=Kind.RELOAD)])
        return self.get()

    def clear(self) -> None:
        """Drop this process's copy (and its counts); the next request reads it again from the database."""
        with self._lock:
            self._index, self._token, self._applied, self._unsafe = None, None, 0, False
            self._snapshot_seq = self._reload_seq = 0
            self._reset_stats()

    @property
    def size(self) -> int:
        return len(self._index) if self._index is not None else 0

    def status(self) -> dict[str, Any]:
        rebuilding = self._rebuild_thread is not None and self._rebuild_thread.is_alive()
        return {**self.stats, "applied_seq": self._applied, "rebuilding": rebuilding, "unsafe": self._unsafe}

    # ---- under self._lock ----------------------------------------------------------------------

    def _usable(self, index: GalleryIndex) -> GalleryIndex:
        if self._unsafe:
            raise IndexUnavailable()
        return index

    def _load_now(self) -> None:
        index, seq = self._full_index(newer_than=-1)
        self._index, self._snapshot_seq, self._applied, self._unsafe = index, seq, seq, False
        self._catch_up()

    def _full_index(self, *, newer_than: int) -> tuple[GalleryIndex, int]:
        """A full index and the log seq its snapshot was read at: the machine's shared snapshot
        (newer than ``newer_than``) when FACE_INDEX_SHARED_DIR is set, else built here."""
        previous = self._index
        if shared_dir() is None or _sees_uncommitted_only() or device_search(settings.FACE_ENGINE) is not None:
            # A test case's uncommitted data must not reach a file; an accelerator's index lives in its memory.
            seq = index_log_state()[0]  # read before the snapshot: changes after it are replayed
            return build_index(previous), seq
        index, seq = shared_index(lambda: _build(previous), model=current_model_id(), newer_than=newer_than)
        self.stats["shared_snapshot_seq"] = seq
        return index, seq

    def _catch_up(self) -> None:
        assert self._index is not None
        seq, upserts_compacted, compacted = index_log_state()
        if self._applied < compacted:
            self._unsafe = True
            self._schedule_rebuild("behind the compacted log")
            return
        if self._applied < upserts_compacted:
            self._schedule_rebuild("behind the compacted additions")
        if seq > self._applied:
            start = time.perf_counter()
            applied_from = self._applied
            self._applied, reload = _apply(self._index, after=self._applied, through=seq)
            self.stats["changes_applied"] += self._applied - applied_from
            self.stats["last_apply_ms"] = round((time.perf_counter() - start) * 1000.0, 3)
            if reload is not None and reload > self._snapshot_seq:
                self._reload_seq = max(self._reload_seq, reload)
                self._schedule_rebuild("reload asked for")
        reason = self._index.rebuild_reason
        if reason:
            self._schedule_rebuild(reason)

    def _schedule_rebuild(self, reason: str) -> None:
        if self._rebuild_thread is not None and self._rebuild_thread.is_alive():
            self._rebuild_owed = reason  # its snapshot may predate what asked: one more after it
            return
        if _sees_uncommitted_only():  # a test case's data: read on this connection, now
            self._rebuild(reason, locked=True)
            return
        self._rebuild_thread = threading.Thread(target=self._rebuild_in_background, args=(reason,),
                                                name="face-index-rebuild", daemon=True)
        self._rebuild_thread.start()

    # ---- the rebuild -----------------------------------------------------------------------------

    def _rebuild_in_background(self, reason: str) -> None:
        try:
            while True:
                self._rebuild_owed = None
                self._rebuild(reason, locked=False)
                if self._rebuild_owed is None:
                    return
                # Asked for again meanwhile, of the old index: a reload newer than the snapshot
                # just taken, or a reason the new index still has; others are gone with the old one.
                assert self._index is not None
                still = "reload asked for" if self._reload_seq > self._snapshot_seq else self._index.rebuild_reason
                if still is None:
                    return
                reason = still
        except Exception:  # noqa: BLE001 - the old index keeps answering; the next change retries
            logger.exception("background rebuild of the face index failed")
        finally:
            connections.close_all()  # this thread's connections, back to the pool

    def _rebuild(self, reason: str, *, locked: bool) -> None:
        start = time.perf_counter()
        new, seq = self._full_index(newer_than=max(self._snapshot_seq, self._reload_seq - 1))
        if locked:
            self._swap(new, seq)
        else:
            with self._lock:
                self._swap(new, seq)
        seconds = time.perf_counter() - start
        self.stats.update(rebuilds=self.stats["rebuilds"] + 1, last_rebuild_s=round(seconds, 3),
                          last_rebuild_reason=reason)
        logger.info("face index rebuilt (%s): %d faces in %.2f s", reason, len(new), seconds)

    def _swap(self, new: GalleryIndex, snapshot_seq: int) -> None:
        latest = index_log_state()[0]
        applied, _reload = _apply(new, after=snapshot_seq, through=latest)
        self._index, self._applied, self._snapshot_seq, self._unsafe = new, applied, snapshot_seq, False


def build_index(previous: GalleryIndex | None = None) -> GalleryIndex:
    """A full snapshot of the gallery as an index (``previous``: its trained IVF cells are reused
    when they suit the size)."""
    return _build(previous)[0]


def _build(previous: GalleryIndex | None) -> tuple[GalleryIndex, dict[int, list[int]]]:
    faces, negatives = read_snapshot(current_model_id())
    engine = settings.FACE_ENGINE
    return GalleryIndex(faces.face_ids, faces.person_ids, faces.embeddings, faces.memberships,
                        exact_max=engine.index_exact_max, nprobe=engine.index_nprobe,
                        device_search=device_search(engine),
                        trained=previous.trained if previous is not None else None,
                        negative_ids=negatives.negative_ids, negative_person_ids=negatives.person_ids,
                        negative_embeddings=negatives.embeddings, codec=engine.index_codec), faces.memberships


def _apply(index: GalleryIndex, *, after: int, through: int) -> tuple[int, int | None]:
    """Apply the changes in (after, through] to ``index``, runs of one kind at a time; returns the
    last seq applied and the last RELOAD's seq (None if none). Every change is idempotent, so a
    snapshot that already holds some of them is left as it was."""
    model = current_model_id()
    last, reload = after, None
    rows = (IndexChange.objects.filter(seq__gt=after, seq__lte=through).order_by("seq")
            .values_list(*_COLUMNS).iterator(chunk_size=5000))
    for kind, run in itertools.groupby(rows, key=lambda row: row[1]):
        changes = list(run)
        last = changes[-1][0]
        if kind == Kind.RELOAD:
            reload = last
        else:
            _apply_run(index, kind, changes, model)
    return last, reload


def _apply_run(index: GalleryIndex, kind: str, changes: list[tuple], model: str) -> None:
    if kind in (Kind.FACE, Kind.NEGATIVE):
        changes = list({c[2]: c for c in changes}.values())  # an id written twice: its last write counts
        mine = [c for c in changes if c[6] == model and c[5] is not None]
        others = [c[2] for c in changes if not (c[6] == model and c[5] is not None)]
        ids = np.asarray([c[2] for c in mine], dtype=np.int64)
        people = np.asarray([c[3] for c in mine], dtype=np.int64)
        vectors = np.frombuffer(b"".join(bytes(c[5]) for c in mine), dtype="<f4").reshape(-1, EMBEDDING_DIM)
        if kind == Kind.FACE:
            index.remove_faces(others)  # encoded under another model: not in this process's space
            index.upsert_faces(ids, people, vectors)
            for person, galleries in {c[3]: c[4] for c in mine if c[4] is not None}.items():
                index.set_person_galleries(person, galleries)
        else:
            index.remove_negatives(others)
            index.upsert_negatives(ids, people, vectors)
    elif kind == Kind.FACE_REMOVED:
        index.remove_faces([c[2] for c in changes])
    elif kind == Kind.PERSON_REMOVED:
        index.remove_people([c[3] for c in changes])
    elif kind == Kind.PERSON_GALLERIES:
        for person, galleries in {c[3]: c[4] or [] for c in changes}.items():
            index.set_person_galleries(person, galleries)
    elif kind == Kind.GALLERY_REMOVED:
        for gallery in {c[2] for c in changes}:
            index.remove_gallery(gallery)
    elif kind == Kind.NEGATIVE_REMOVED:
        index.remove_negatives([c[2] for c in changes])
    else:
        logger.warning("unknown index change kind %r ignored", kind)


index_cache = IndexCache()
