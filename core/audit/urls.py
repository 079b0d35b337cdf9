from django.urls import path

from core.audit.apis import AuditListApi

urlpatterns = [
    path("", AuditListApi.as_view(), name="audit-list"),
]
