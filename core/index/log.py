"""The index change log: appended inside every write that changes what the face index holds, read
by every process, which applies what it has not applied yet (holder.py).

Each process compares the token it last caught up at with `current_index_token()` on every
request. With a shared cache (Redis) that is one cache read; with a process-local cache, or when the
shared cache is unreachable, one primary-key read of `IndexLogState`. The token also counts this
process's own writes, so a process sees them on its next request even when the cache was not told
(the cache was down at commit time, or a test's transaction never commits).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Max
from django.utils import timezone

from core.models import IndexChange, IndexLogState

logger = logging.getLogger(__name__)
CACHE_KEY = "face-index-version"
Kind = IndexChange.Kind
UPSERT_KINDS = (Kind.FACE, Kind.NEGATIVE)
_local_writes = 0
_local_writes_lock = threading.Lock()
_publish_owed = False
_db_seen: tuple[str, int, float] | None = None  # (shared token, database seq, when read)


@dataclass(frozen=True)
class Change:
    kind: str
    item_id: int | None = None
    person_id: int | None = None
    galleries: tuple[int, ...] | None = None
    embedding: bytes | None = None
    model: str = ""


def index_log_append(changes: Sequence[Change]) -> None:
    """Append ``changes`` inside the caller's transaction; the cache is told once it commits.

    The state row is locked first (its UPDATE), and the sequence numbers are read under that lock:
    two writers take turns, so numbers are handed out in commit order. Call it late in the
    transaction: the lock is held until the commit."""
    if not changes:
        return
    if not in_own_transaction():
        raise RuntimeError("index_log_append must run inside the transaction of the write it records")
    global _local_writes
    with transaction.atomic():
        last = _advance(len(changes))
        first = last - len(changes) + 1
        now = timezone.now()
        IndexChange.objects.bulk_create([
            IndexChange(seq=first + i, kind=c.kind, item_id=c.item_id, person_id=c.person_id,
                        galleries=list(c.galleries) if c.galleries is not None else None,
                        embedding=c.embedding, model=c.model, created=now)
            for i, c in enumerate(changes)
        ])
    with _local_writes_lock:
        _local_writes += 1
    transaction.on_commit(_publish)


def in_own_transaction() -> bool:
    """A transaction of the caller's is open (a test case's wrapper does not count: it stands for
    the autocommit a real request would have)."""
    return any(not getattr(block, "_from_testcase", False) for block in connection.atomic_blocks)


def appended_in_open_transaction() -> bool:
    """This connection's open transaction has appended to the log: its changes are visible here and
    not yet committed (they may be rolled back). Told by the publication it registered to run on
    commit, which Django drops with a rollback; under a test case's wrapper only the callbacks of the
    caller's own transaction count (they carry its savepoint)."""
    blocks = connection.atomic_blocks
    first = next((i for i, block in enumerate(blocks) if not getattr(block, "_from_testcase", False)), None)
    if first is None:
        return False
    sid = connection.savepoint_ids[first - 1] if first else None
    return any(func is _publish and (sid is None or sid in sids) for sids, func, _robust in connection.run_on_commit)


def _advance(count: int) -> int:
    """Move the state row's counter by ``count`` (creating the row once) and return its new value."""
    for _attempt in range(2):
        if IndexLogState.objects.filter(pk=1).update(seq=F("seq") + count):
            return int(IndexLogState.objects.values_list("seq", flat=True).get(pk=1))
        try:
            with transaction.atomic():
                IndexLogState.objects.create(pk=1, seq=count)
            return count
        except IntegrityError:  # another writer created it first: take its lock and go on
            continue
    raise RuntimeError("could not advance the index log")


def index_log_forget(*, person_id: int | None = None, face_ids: Sequence[int] = ()) -> int:
    """Blank the embeddings the log still holds of a person (their faces and their negatives) or of
    these faces, inside the erasing transaction: an erased face must not outlive its row here. A
    blanked change reads as a removal (holder.py); the removal logged with the erasure follows it."""
    rows = IndexChange.objects.filter(kind__in=UPSERT_KINDS, embedding__isnull=False)
    if person_id is not None:
        return rows.filter(person_id=person_id).update(embedding=None)
    if face_ids:
        return rows.filter(kind=Kind.FACE, item_id__in=list(face_ids)).update(embedding=None)
    return 0


def index_log_state() -> tuple[int, int, int]:
    """(last seq, upserts compacted through, everything compacted through)."""
    row = IndexLogState.objects.filter(pk=1).values_list("seq", "upserts_compacted_through",
                                                         "compacted_through").first()
    return (int(row[0]), int(row[1]), int(row[2])) if row else (0, 0, 0)


def index_log_compact(now=None) -> dict[str, int]:
    """Drop what no process should need: changes carrying embeddings older than
    INDEX_LOG_RETENTION_HOURS, every change older than INDEX_LOG_REMOVALS_RETENTION_DAYS. A process
    behind the first rebuilds (in the background, still applying removals); behind the second it
    refuses recognition until its rebuild is done (holder.py)."""
    now = now or timezone.now()
    upserts_before = now - timedelta(hours=settings.INDEX_LOG_RETENTION_HOURS)
    all_before = now - timedelta(days=settings.INDEX_LOG_REMOVALS_RETENTION_DAYS)
    with transaction.atomic():
        _advance(0)  # the state row's lock: no writer appends meanwhile
        state = IndexLogState.objects.get(pk=1)
        upserts = IndexChange.objects.filter(created__lt=upserts_before).aggregate(m=Max("seq"))["m"] or 0
        everything = IndexChange.objects.filter(created__lt=all_before).aggregate(m=Max("seq"))["m"] or 0
        dropped_upserts, _ = IndexChange.objects.filter(seq__lte=upserts, kind__in=UPSERT_KINDS).delete()
        dropped_rest, _ = IndexChange.objects.filter(seq__lte=everything).delete()
        state.upserts_compacted_through = max(state.upserts_compacted_through, upserts, everything)
        state.compacted_through = max(state.compacted_through, everything)
        state.save(update_fields=["upserts_compacted_through", "compacted_through"])
    return {"index_changes": dropped_upserts + dropped_rest}


def _publish() -> None:
    global _publish_owed
    if not cache_is_shared():
        return
    try:
        cache.set(CACHE_KEY, f"c-{uuid.uuid4().hex}", timeout=None)
        _publish_owed = False
    except Exception:  # noqa: BLE001 - the database's counter still tells every process
        # Owed: processes that read the cache's old token after it is back (it was unreachable
        # from here only, or it kept its data over a restart) would miss this write.
        _publish_owed = True
        logger.warning("could not publish the index version to the cache", exc_info=True)


def cache_is_shared() -> bool:
    backend = settings.CACHES["default"]["BACKEND"]
    return not backend.endswith(("LocMemCache", "DummyCache"))


def db_index_seq() -> int:
    return index_log_state()[0]


def current_index_token() -> str:
    shared = _shared_token()
    if shared.startswith("db-"):  # read from the database just now
        return f"{shared}/{_local_writes}"
    return f"{shared}/db-{_checked_db_seq(shared)}/{_local_writes}"


def _checked_db_seq(shared: str) -> int:
    """The database's seq as last read: read again whenever the shared token moves, and at least
    every INDEX_DB_CHECK_SECONDS. A write whose publish the cache missed (it was unreachable, or
    restarted empty and was re-seeded with an old token) is so noticed by every process within that
    time, even by one that served nothing while the cache was down."""
    global _db_seen
    seen, now = _db_seen, time.monotonic()
    if seen is None or seen[0] != shared or now - seen[2] >= settings.INDEX_DB_CHECK_SECONDS:
        seen = (shared, db_index_seq(), now)
        _db_seen = seen
    return seen[1]


def _shared_token() -> str:
    if not cache_is_shared():
        return f"db-{db_index_seq()}"
    try:
        if _publish_owed:  # this process wrote while the cache was unreachable: tell it now
            _publish()
        token = cache.get(CACHE_KEY)
        if token is None:
            token = f"db-{db_index_seq()}"
            cache.add(CACHE_KEY, token, timeout=None)
        return str(token)
    except Exception:  # noqa: BLE001 - cache down: fall back to the database
        logger.warning("cache unreachable; checking the index version in the database", exc_info=True)
        return f"db-{db_index_seq()}"
