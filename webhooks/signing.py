"""The signature of a webhook's body: ``X-Facerec-Signature: t=<unix seconds>,v1=<hex>`` where
``<hex>`` is HMAC-SHA256(secret, "<t>." + body). The time is signed with the body, so a captured
request replayed later than the receiver's tolerance is refused. Standard library only: the
docs show ``verify_signature`` as the snippet a receiver copies."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

SIGNATURE_HEADER = "X-Facerec-Signature"
DELIVERY_HEADER = "X-Facerec-Delivery"
EVENT_HEADER = "X-Facerec-Event"
USER_AGENT = "facerec-webhooks/1"


def body_bytes(payload: dict) -> bytes:
    """The compact JSON sent (and signed)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def sign(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(secret: str, header: str, body: bytes, tolerance: int = 300, now: float | None = None) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` at a time within ``tolerance`` seconds of
    ``now``. Several v1 values are accepted (a receiver rotating its secret may be sent either)."""
    try:
        fields = [item.split("=", 1) for item in header.split(",")]
        timestamps = [int(value) for key, value in fields if key.strip() == "t"]
        signatures = [value.strip() for key, value in fields if key.strip() == "v1"]
    except (ValueError, AttributeError):
        return False
    if len(timestamps) != 1 or not signatures:
        return False
    timestamp = timestamps[0]
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, signature) for signature in signatures)
