from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from core.apis import HealthApi, StatsApi, TokenApi
from core.exposition import metrics_view
from jobs.apis import JobDetailApi
from people.apis import (
    FaceDetailApi,
    FaceFileApi,
    GalleryDetailApi,
    GalleryListCreateApi,
    PersonDetailApi,
    PersonFacesApi,
    PersonListCreateApi,
)
from people.duplicate_apis import DuplicatePairsApi
from recognition.apis import BatchRecognizeApi, CacheApi, EncodingsApi, RecognizeApi, VerifyApi

api = [
    path("auth/token/", TokenApi.as_view(), name="token"),
    path("health/", HealthApi.as_view(), name="health"),
    path("stats/", StatsApi.as_view(), name="stats"),
    path("galleries/", GalleryListCreateApi.as_view(), name="gallery-list"),
    path("galleries/<int:pk>/", GalleryDetailApi.as_view(), name="gallery-detail"),
    path("people/", PersonListCreateApi.as_view(), name="person-list"),
    path("people/duplicates/", DuplicatePairsApi.as_view(), name="person-duplicates"),
    path("people/<int:pk>/", PersonDetailApi.as_view(), name="person-detail"),
    path("people/<int:pk>/faces/", PersonFacesApi.as_view(), name="person-faces"),
    path("faces/recognize/", RecognizeApi.as_view(), name="recognize"),
    path("faces/batch-recognize/", BatchRecognizeApi.as_view(), name="batch-recognize"),
    path("faces/verify/", VerifyApi.as_view(), name="verify"),
    path("faces/cache/", CacheApi.as_view(), name="index-cache"),
    path("faces/encodings/", EncodingsApi.as_view(), name="encodings"),
    path("faces/<int:pk>/", FaceDetailApi.as_view(), name="face-detail"),
    path("faces/<int:pk>/image/", FaceFileApi.as_view(kind="image"), name="face-image"),
    path("faces/<int:pk>/thumbnail/", FaceFileApi.as_view(kind="thumbnail"), name="face-thumbnail"),
    path("jobs/<uuid:pk>/", JobDetailApi.as_view(), name="job-detail"),
    path("audit/", include("core.audit.urls")),
    path("cameras/", include("streams.urls")),
    path("events/", include("events.urls")),
    path("webhooks/", include("webhooks.urls")),
    path("attendance/", include("attendance.urls")),
    path("", include("privacy.urls")),  # people/<id>/export/, galleries/export/ and galleries/import/
    path("corrections/", include("corrections.urls")),
    path("unknowns/", include("unknowns.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its setup script from a URL: no inline script, so the page passes the CSP.
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="docs"),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include(api)),
    path("metrics", metrics_view, name="metrics"),  # Prometheus (core/exposition.py: token or network)
    path("", include("streams.page_urls")),
    path("", include("events.page_urls")),
]
# Media is deliberately not served: photos are personal data, served by /api/faces/{id}/image/.

handler400 = "core.errors.json_400"
handler403 = "core.errors.json_403"
handler404 = "core.errors.json_404"
handler500 = "core.errors.json_500"
