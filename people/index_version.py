"""The index version: bumped inside every write that changes the index, published after commit.

Each process compares the token it built its index from with `current_index_token()` on every
request. With a shared cache (Redis) that is one cache read; with a process-local cache, or when
the shared cache is unreachable, it is one primary-key read of `IndexState`. The token also counts
this process's own writes, so a process sees them on its next request even when the cache was not
told (the cache was down at commit time, or a test's transaction never commits).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import F

from people.models import IndexState

logger = logging.getLogger(__name__)
CACHE_KEY = "face-index-version"
_local_writes = 0
_local_writes_lock = threading.Lock()
_publish_owed = False
_db_seen: tuple[str, int, float] | None = None  # (shared token, database version, when read)


def cache_is_shared() -> bool:
    backend = settings.CACHES["default"]["BACKEND"]
    return not backend.endswith(("LocMemCache", "DummyCache"))


def db_index_version() -> int:
    state = IndexState.objects.filter(pk=1).values_list("version", flat=True).first()
    return int(state or 0)


def index_version_bump() -> None:
    """Call inside the writing transaction; the cache is told only once the write is committed."""
    global _local_writes
    updated = IndexState.objects.filter(pk=1).update(version=F("version") + 1)
    if not updated:
        IndexState.objects.get_or_create(pk=1, defaults={"version": 1})
    with _local_writes_lock:
        _local_writes += 1
    transaction.on_commit(_publish)


def _publish() -> None:
    global _publish_owed
    if not cache_is_shared():
        return
    try:
        cache.set(CACHE_KEY, f"c-{uuid.uuid4().hex}", timeout=None)
        _publish_owed = False
    except Exception:  # noqa: BLE001 - the database version still tells every process
        # Owed: processes that read the cache's old token after it is back (it was unreachable
        # from here only, or it kept its data over a restart) would miss this write.
        _publish_owed = True
        logger.warning("could not publish the index version to the cache", exc_info=True)


def current_index_token() -> str:
    shared = _shared_token()
    if shared.startswith("db-"):  # read from the database just now
        return f"{shared}/{_local_writes}"
    return f"{shared}/db-{_checked_db_version(shared)}/{_local_writes}"


def _checked_db_version(shared: str) -> int:
    """The database's version as last read: read again whenever the shared token moves, and at
    least every INDEX_DB_CHECK_SECONDS. A write whose publish the cache missed (it was unreachable,
    or restarted empty and was re-seeded with an old token) is so noticed by every process within
    that time, even by one that served nothing while the cache was down."""
    global _db_seen
    seen, now = _db_seen, time.monotonic()
    if seen is None or seen[0] != shared or now - seen[2] >= settings.INDEX_DB_CHECK_SECONDS:
        seen = (shared, db_index_version(), now)
        _db_seen = seen
    return seen[1]


def _shared_token() -> str:
    if not cache_is_shared():
        return f"db-{db_index_version()}"
    try:
        if _publish_owed:  # this process wrote while the cache was unreachable: tell it now
            _publish()
        token = cache.get(CACHE_KEY)
        if token is None:
            token = f"db-{db_index_version()}"
            cache.add(CACHE_KEY, token, timeout=None)
        return str(token)
    except Exception:  # noqa: BLE001 - cache down: fall back to the database
        logger.warning("cache unreachable; checking the index version in the database", exc_info=True)
        return f"db-{db_index_version()}"
