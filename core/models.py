"""The face index's change log (core.index): what every process applies to its in-memory index."""

from __future__ import annotations

import secrets

from django.db import models
from django.utils import timezone


def new_epoch() -> str:
    return secrets.token_hex(8)


class IndexChange(models.Model):
    """One change to what the face index holds, written in the transaction of the write that made
    it. ``seq`` is allocated under the lock of ``IndexLogState``'s row, so it follows commit order:
    a process that has applied every change up to n never later finds a committed change below n."""

    class Kind(models.TextChoices):
        FACE = "face", "face encoded (added or replaced)"
        FACE_REMOVED = "face_removed", "face removed"
        PERSON_REMOVED = "person_removed", "person removed"
        PERSON_GALLERIES = "person_galleries", "person's galleries set"
        GALLERY_REMOVED = "gallery_removed", "gallery removed"
        NEGATIVE = "negative", "negative face added"
        NEGATIVE_REMOVED = "negative_removed", "negative face removed"
        RELOAD = "reload", "full rebuild asked for"

    seq = models.BigIntegerField(primary_key=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # The face's, negative's or gallery's id, by kind; the person's id where the kind has one.
    item_id = models.BigIntegerField(null=True, blank=True)
    person_id = models.BigIntegerField(null=True, blank=True)
    galleries = models.JSONField(null=True, blank=True)  # the person's gallery ids, for FACE and PERSON_GALLERIES
    embedding = models.BinaryField(null=True, blank=True)  # 128 float32, for FACE and NEGATIVE
    model = models.CharField(max_length=200, blank=True)  # the embedding's model id
    created = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["seq"]
        # Erasure finds a person's or a face's entries to forget their embeddings (log.py).
        indexes = [models.Index(fields=["person_id"]), models.Index(fields=["item_id"])]

    def __str__(self) -> str:
        return f"{self.seq}: {self.kind} {self.item_id or self.person_id or ''}"


class IndexLogState(models.Model):
    """One row (pk 1): the last sequence number given out, and how far the log was compacted.

    Compaction drops the changes that carry embeddings (FACE, NEGATIVE) after
    INDEX_LOG_RETENTION_HOURS, the small ones (removals, galleries) only after
    INDEX_LOG_REMOVALS_RETENTION_DAYS: a process that fell behind the first rebuilds while still
    applying every removal, so a deleted person is never named meanwhile."""

    seq = models.BigIntegerField(default=0)
    upserts_compacted_through = models.BigIntegerField(default=0)
    compacted_through = models.BigIntegerField(default=0)
    # Names this log among databases of the same name (a test database created again restarts its
    # seqs at 0): a machine's shared index snapshots are keyed by it (core/index/shared.py).
    epoch = models.CharField(max_length=32, default=new_epoch)

    def __str__(self) -> str:
        return f"index log at {self.seq}"
