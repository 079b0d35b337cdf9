from django.contrib import admin

from core.audit.models import AuditRecord


@admin.register(AuditRecord)
class AuditRecordAdmin(admin.ModelAdmin):
    """Read only: the trail is written by the services, never by hand."""

    list_display = ["created_at", "action", "actor_name", "target_type", "target_ids", "request_id"]
    list_filter = ["action", "target_type", "created_at"]
    search_fields = ["actor_name", "request_id", "action"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in AuditRecord._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
