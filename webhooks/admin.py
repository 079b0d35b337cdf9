"""Webhooks in the admin: subscriptions, checked by the same field checks as the API (the SSRF rule
included) and audited; the delivery log, read-only, with an action to redeliver."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from core.audit.services import audit_record
from webhooks import services
from webhooks.models import KINDS, PHASES, Delivery, Subscription


class SubscriptionForm(forms.ModelForm):
    kinds = forms.MultipleChoiceField(choices=[(kind, kind) for kind in KINDS], initial=list(KINDS),
                                      widget=forms.CheckboxSelectMultiple)
    phases = forms.MultipleChoiceField(choices=[(phase, phase) for phase in PHASES], initial=["opened"],
                                       widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = Subscription
        fields = ["name", "url", "secret", "active", "kinds", "phases", "people", "cameras"]

    def _check(self, field: str):
        try:
            return services.check_field(field, self.cleaned_data[field])
        except services.FieldError as exc:
            raise forms.ValidationError(exc.message) from exc

    def clean_name(self):
        return self._check("name")

    def clean_url(self):
        return self._check("url")

    def clean_secret(self):
        return self._check("secret")

    def clean_kinds(self):
        return self._check("kinds")

    def clean_phases(self):
        return self._check("phases")


def _deliveries_link(subscription: Subscription) -> str:
    url = reverse("admin:webhooks_delivery_changelist") + f"?subscription__id__exact={subscription.pk}"
    return format_html('<a href="{}">deliveries</a>', url)


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    form = SubscriptionForm
    list_display = ["name", "url", "active", "kinds", "phases", "deliveries", "created_at"]
    list_filter = ["active"]
    search_fields = ["name", "url"]
    filter_horizontal = ["people", "cameras"]
    readonly_fields = ["created_by", "created_at", "updated_at", "deliveries"]

    @admin.display(description="Deliveries")
    def deliveries(self, subscription: Subscription) -> str:
        return _deliveries_link(subscription) if subscription.pk else "-"

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
        audit_record(actor=request.user, action="webhook.update" if change else "webhook.create",
                     target_type="webhook", target_ids=[obj.pk], details={"fields": sorted(form.changed_data)},
                     request_id=getattr(request, "request_id", "") or "")

    def delete_model(self, request, obj):
        pk = obj.pk
        super().delete_model(request, obj)
        audit_record(actor=request.user, action="webhook.delete", target_type="webhook", target_ids=[pk],
                     request_id=getattr(request, "request_id", "") or "")


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["id", "subscription", "phase", "state", "attempts", "last_status_code", "last_latency_ms",
                    "short_error", "created_at", "delivered_at"]
    list_filter = ["state", "phase", "subscription"]
    search_fields = ["=id", "=event_uid"]
    readonly_fields = [field.name for field in Delivery._meta.fields] + ["delay_ms"]
    actions = ["redeliver"]
    list_select_related = ["subscription"]

    @admin.display(description="Last error")
    def short_error(self, delivery: Delivery) -> str:
        return delivery.last_error[:80]

    @admin.display(description="Delay decision → delivery (ms)")
    def delay_ms(self, delivery: Delivery) -> str:
        return "-" if delivery.delay_ms is None else f"{delivery.delay_ms:.0f}"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        # A log: written by the delivery attempts only.
        return False

    @admin.action(description="Redeliver the selected deliveries (as new deliveries)")
    def redeliver(self, request, queryset):
        for delivery in queryset:
            services.delivery_redeliver(delivery=delivery, actor=request.user,
                                        request_id=getattr(request, "request_id", "") or "")
        messages.success(request, f"{queryset.count()} delivery(ies) queued again.")
