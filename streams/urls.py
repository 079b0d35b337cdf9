from django.urls import path

from streams.apis import CameraDetailApi, CameraListCreateApi

urlpatterns = [
    path("", CameraListCreateApi.as_view(), name="camera-list"),
    path("<int:pk>/", CameraDetailApi.as_view(), name="camera-detail"),
]
