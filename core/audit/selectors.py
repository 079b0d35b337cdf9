from __future__ import annotations

from datetime import datetime

from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast

from core.audit.models import AuditRecord


def audit_list(
    *, action: str = "", actor: str = "", target_type: str = "", target_id: int | None = None,
    since: datetime | None = None, until: datetime | None = None,
) -> QuerySet[AuditRecord]:
    """Newest first. ``action`` is exact ("face.enrol") or a group ("face" matches "face.*")."""
    queryset = AuditRecord.objects.order_by("-created_at", "-id")
    if action:
        queryset = queryset.filter(Q(action=action) | Q(action__startswith=f"{action}."))
    if actor:
        queryset = queryset.filter(actor_name=actor)
    if target_type:
        queryset = queryset.filter(target_type=target_type)
    if target_id is not None:
        # SQLite has no JSON containment lookup; the stored text of a list of ints is "[1, 23]"
        # on SQLite and PostgreSQL alike, so match the id between its delimiters.
        queryset = queryset.annotate(target_text=Cast("target_ids", TextField())).filter(
            target_text__regex=rf"[\[ ]{int(target_id)}[,\]]")
    if since is not None:
        queryset = queryset.filter(created_at__gte=since)
    if until is not None:
        queryset = queryset.filter(created_at__lt=until)
    return queryset
