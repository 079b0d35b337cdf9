"""API tokens: who a key names (HTTP and WebSockets alike), issuing, expiry and revocation.

A token is DRF's ``Token`` (one per user). It expires ``TOKEN_TTL_HOURS`` after it was issued
(0: never) and is revoked by deleting it: every check reads the database, so a revoked or
expired token is refused on the next request, and at the next WebSocket connect."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed

from core.audit.services import audit_record

INVALID = "The token is not valid (unknown, or revoked)."
EXPIRED = "The token has expired: ask for a new one with POST /api/auth/token/."
INACTIVE = "The user is inactive."
KEY_MAX = 100  # DRF's keys are 40 characters; anything much longer is not a key


def token_expires(token: Token) -> datetime | None:
    """When ``token`` stops working; None when tokens never expire (TOKEN_TTL_HOURS=0)."""
    hours = float(settings.TOKEN_TTL_HOURS)
    return token.created + timedelta(hours=hours) if hours > 0 else None


def token_expired(token: Token) -> bool:
    expires = token_expires(token)
    return expires is not None and expires <= timezone.now()


@dataclass(frozen=True)
class TokenCheck:
    """The user a key names, or why it names nobody (``error`` is a message for the client)."""

    user: object | None
    token: Token | None
    error: str = ""


def token_check(key: str) -> TokenCheck:
    """The one rule for every transport: unknown or revoked, expired, inactive user → refused."""
    if not key or len(key) > KEY_MAX or not (key.isascii() and key.isprintable()):
        return TokenCheck(None, None, INVALID)  # a NUL or a lone surrogate must not reach the database
    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None:
        return TokenCheck(None, None, INVALID)
    if not token.user.is_active:
        return TokenCheck(None, token, INACTIVE)
    if token_expired(token):
        return TokenCheck(None, token, EXPIRED)
    return TokenCheck(token.user, token)


@transaction.atomic
def token_issue(*, user) -> Token:
    """The user's token; a new one when it has none or its own has expired (never two at once)."""
    token = Token.objects.select_for_update().filter(user=user).first()
    if token is not None and not token_expired(token):
        return token
    if token is not None:
        token.delete()
    # get_or_create: two first requests at once must not fail on the one-token-per-user constraint.
    return Token.objects.get_or_create(user=user)[0]


@transaction.atomic
def token_revoke(*, user, actor=None, request_id: str = "", via: str = "api") -> bool:
    """Delete the user's token (False when it had none). Recorded in the audit trail."""
    deleted, _ = Token.objects.filter(user=user).delete()
    if deleted:
        audit_record(actor=actor, action="token.revoke", target_type="user", target_ids=[user.pk],
                     details={"via": via}, request_id=request_id)
    return bool(deleted)


class BearerTokenAuthentication(TokenAuthentication):
    """Accepts `Authorization: Bearer <token>` as well as DRF's `Token <token>`."""

    keywords = ("bearer", "token")

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        parts = header.split()
        if not parts or parts[0].lower() not in self.keywords:
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("Invalid Authorization header: expected '<Bearer|Token> <token>'.")
        return self.authenticate_credentials(parts[1])

    def authenticate_credentials(self, key):
        check = token_check(key)
        if check.user is None:
            raise AuthenticationFailed(check.error)
        return check.user, check.token

    def authenticate_header(self, request):
        return "Bearer"
