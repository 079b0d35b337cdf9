"""API tokens in the admin: staff see whose token exists and when it expires, and revoke any.

DRF's own page lists every key in full: whoever can read the page could act as anyone. Here a
key is shown by its first characters only, and revoking (deleting) is recorded in the audit trail."""

from __future__ import annotations

from django.contrib import admin
from rest_framework.authtoken.admin import TokenAdmin
from rest_framework.authtoken.models import TokenProxy

from core.audit.services import audit_context
from core.authentication import token_expired, token_expires, token_revoke

admin.site.unregister(TokenProxy)


@admin.register(TokenProxy)
class ApiTokenAdmin(TokenAdmin):
    list_display = ("key_start", "user", "created", "expires", "expired")
    readonly_fields = ("user",)
    # No bulk actions: their checkboxes would carry the full keys (DRF's reason is another: its
    # pages are addressed by user id). A token is revoked from its page (Delete).
    actions = None

    @admin.display(description="key")
    def key_start(self, token) -> str:
        return f"{token.key[:6]}…"

    @admin.display(description="expires")
    def expires(self, token):
        return token_expires(token) or "never"

    @admin.display(boolean=True)
    def expired(self, token) -> bool:
        return token_expired(token)

    def delete_model(self, request, obj):
        token_revoke(user=obj.user, via="admin", **audit_context(request))

    def has_add_permission(self, request) -> bool:
        # A token is issued to its user (POST /api/auth/token/): staff never see another's key.
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
