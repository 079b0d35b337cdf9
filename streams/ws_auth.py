"""WebSocket authentication: an API token in the query string (`?token=`; browsers cannot set
headers on a WebSocket) or the Django session cookie (the /live/ page of a signed-in user)."""

from __future__ import annotations

from urllib.parse import parse_qs

from channels.auth import AuthMiddleware
from channels.db import database_sync_to_async
from channels.security.websocket import AllowedHostsOriginValidator
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.contrib.auth.models import AnonymousUser


@database_sync_to_async
def _token_check(key: str):
    from core.authentication import token_check

    return token_check(key)


class _TokenAuthMiddleware(AuthMiddleware):
    """The session's user, replaced by the token's when a token is given. A token that names
    nobody (unknown, revoked, expired, its user inactive: the HTTP API's rules, core.authentication)
    leaves the connection anonymous, and scope["auth_error"] says why."""

    async def resolve_scope(self, scope):
        await super().resolve_scope(scope)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        keys = query.get("token")
        if keys:
            check = await _token_check(keys[0])
            if check.user is None:
                scope["user"]._wrapped = AnonymousUser()
                scope["auth_error"] = check.error
            else:
                scope["user"]._wrapped = check.user


def _has_token(scope) -> bool:
    return bool(parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token"))


class OriginCheckUnlessToken:
    """Browsers send cookies with a WebSocket opened by any site: a connection authenticated by the
    session must come from one of ALLOWED_HOSTS (Channels' origin check, else HTTP 403). A
    connection carrying a token sends no cookie to abuse, so scripts and devices with a token need
    no Origin header."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.checked = AllowedHostsOriginValidator(inner)

    async def __call__(self, scope, receive, send):
        app = self.inner if _has_token(scope) else self.checked
        return await app(scope, receive, send)


def TokenOrSessionAuthMiddleware(inner):  # noqa: N802 - named like Channels' AuthMiddlewareStack
    return OriginCheckUnlessToken(CookieMiddleware(SessionMiddleware(_TokenAuthMiddleware(inner))))
