"""Writing the audit trail. Callers write inside the transaction of the write they describe, so a
rolled-back write leaves no record and a committed one always has its record."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from core.audit.models import AuditRecord

REQUEST_ID_MAX = AuditRecord._meta.get_field("request_id").max_length


def audit_context(request) -> dict[str, Any]:
    """The ``actor`` and ``request_id`` keyword arguments a service takes, from an HTTP request.

    ``request.request_id`` is set by core.middleware; without it the id is blank.
    """
    return {"actor": getattr(request, "user", None), "request_id": getattr(request, "request_id", "") or ""}


def audit_record(
    *, actor, action: str, target_type: str, target_ids: Iterable[int],
    details: dict | None = None, request_id: str = "",
) -> AuditRecord:
    """One INSERT. ``actor`` may be None or an anonymous user (recorded as no one)."""
    if actor is not None and not actor.is_authenticated:
        actor = None
    return AuditRecord.objects.create(
        actor=actor,
        actor_name=actor.get_username() if actor is not None else "",
        action=action,
        target_type=target_type,
        target_ids=list(target_ids),
        details=details or {},
        request_id=str(request_id or "")[:REQUEST_ID_MAX],
    )
