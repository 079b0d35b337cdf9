"""Rate limits, failing open: a cache outage must not turn every request into a 500.

The client's address is the connection's (REMOTE_ADDR), never a client's own X-Forwarded-For:
DRF's default would let a client pick a new address per request. Behind a proxy, uvicorn sets the
connection's address from X-Forwarded-For for FORWARDED_ALLOW_IPS only (docs/operations.md)."""

from __future__ import annotations

import hashlib
import logging
import time

from django.conf import settings
from django.core.cache import cache
from rest_framework import throttling

logger = logging.getLogger(__name__)


class _FailOpen:
    def allow_request(self, request, view) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception as exc:  # noqa: BLE001 - any cache backend's connection error
            logger.warning("throttle cache unreachable, request let through: %s", exc)
            return True

    def get_ident(self, request) -> str:
        return request.META.get("REMOTE_ADDR") or "unknown"


class AnonRateThrottle(_FailOpen, throttling.AnonRateThrottle):
    pass


class UserRateThrottle(_FailOpen, throttling.UserRateThrottle):
    pass


def parse_rate(rate: str | None) -> tuple[int, int] | None:
    """DRF's "<count>/<second|minute|hour|day>"; None (no limit) for "", "0" or a zero count."""
    if not rate or rate.strip() in ("0", "off"):
        return None
    count, _, period = rate.partition("/")
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}[period.strip()[:1]]
    return (int(count), seconds) if int(count) > 0 else None


class TokenAddressThrottle(_FailOpen, throttling.SimpleRateThrottle):
    """Token requests per client address, right or wrong (TOKEN_RATE_PER_ADDRESS)."""

    scope = "token_address"

    def get_rate(self):
        rate = settings.TOKEN_RATE_PER_ADDRESS
        return rate if parse_rate(rate) else None  # None: DRF lets everything through

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class AccountFailures:
    """Failed password attempts against one account, from any address (TOKEN_RATE_PER_ACCOUNT):
    spreading a guessing attack over many addresses does not get past it.

    Once the count is reached every attempt is refused, the right password included (so the
    answer says nothing about the guess), until the oldest failure leaves the window. Tokens
    already issued keep working. Counted read-modify-write: concurrent failures may be counted
    once, which lets a few more guesses through, never fewer."""

    def __init__(self, username: str) -> None:
        # Hashed: a bounded key whatever was typed (lone surrogates included), and no usernames in the cache.
        name = username.strip().casefold().encode("utf-8", "surrogatepass")
        self.key = "token-failures:" + hashlib.sha256(name).hexdigest()
        self.rate = parse_rate(settings.TOKEN_RATE_PER_ACCOUNT)

    def _history(self, now: float) -> list[float]:
        if self.rate is None:
            return []
        _, window = self.rate
        try:
            history = cache.get(self.key) or []
        except Exception as exc:  # noqa: BLE001 - fail open, as the other limits
            logger.warning("throttle cache unreachable, token attempt let through: %s", exc)
            return []
        return [t for t in history if isinstance(t, float) and t > now - window]

    def wait(self) -> float | None:
        """Seconds until this account may try again; None when it may now."""
        now = time.time()
        history = self._history(now)
        if self.rate is None or len(history) < self.rate[0]:
            return None
        return max(1.0, min(history) + self.rate[1] - now)

    def record(self) -> None:
        if self.rate is None:
            return
        now = time.time()
        count, window = self.rate
        history = sorted([*self._history(now), now])[-count:]
        try:
            cache.set(self.key, history, timeout=window)
        except Exception as exc:  # noqa: BLE001
            logger.warning("throttle cache unreachable, token failure not counted: %s", exc)
