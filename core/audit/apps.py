from django.apps import AppConfig


class AuditConfig(AppConfig):
    # Part of core's layer (every app records into it, it imports no app); its label, tables and
    # migrations keep the name "audit".
    name = "core.audit"
    label = "audit"
    verbose_name = "Audit trail"
