from django.urls import path

from webhooks.apis import (
    DeliveryRedeliverApi,
    WebhookDeliveriesApi,
    WebhookDetailApi,
    WebhookListCreateApi,
    WebhookTestApi,
)

urlpatterns = [
    path("", WebhookListCreateApi.as_view(), name="webhook-list"),
    path("<int:pk>/", WebhookDetailApi.as_view(), name="webhook-detail"),
    path("<int:pk>/deliveries/", WebhookDeliveriesApi.as_view(), name="webhook-deliveries"),
    path("<int:pk>/test/", WebhookTestApi.as_view(), name="webhook-test"),
    path("deliveries/<uuid:pk>/redeliver/", DeliveryRedeliverApi.as_view(), name="webhook-redeliver"),
]
