from django.urls import path

from events.apis import EventCropApi, EventDetailApi, EventListApi

urlpatterns = [
    path("", EventListApi.as_view(), name="event-list"),
    path("<int:pk>/", EventDetailApi.as_view(), name="event-detail"),
    path("<int:pk>/crop/", EventCropApi.as_view(), name="event-crop"),
]
