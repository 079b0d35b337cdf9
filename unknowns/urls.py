from django.urls import path

from unknowns.apis import (
    ClusterDetailApi,
    ClusterDiscardApi,
    ClusterListApi,
    ClusterMergeApi,
    ClusterNameApi,
    ClusterSplitApi,
    SightingCropApi,
)

urlpatterns = [
    path("", ClusterListApi.as_view(), name="unknown-list"),
    path("<int:pk>/", ClusterDetailApi.as_view(), name="unknown-detail"),
    path("<int:pk>/name/", ClusterNameApi.as_view(), name="unknown-name"),
    path("<int:pk>/merge/", ClusterMergeApi.as_view(), name="unknown-merge"),
    path("<int:pk>/split/", ClusterSplitApi.as_view(), name="unknown-split"),
    path("<int:pk>/discard/", ClusterDiscardApi.as_view(), name="unknown-discard"),
    path("sightings/<int:pk>/crop/", SightingCropApi.as_view(), name="sighting-crop"),
]
