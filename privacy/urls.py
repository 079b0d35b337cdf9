from django.urls import path

from privacy.apis import GalleryExportApi, GalleryImportApi, PersonExportApi

urlpatterns = [
    path("people/<int:pk>/export/", PersonExportApi.as_view(), name="person-export"),
    path("galleries/export/", GalleryExportApi.as_view(), name="gallery-export"),
    path("galleries/import/", GalleryImportApi.as_view(), name="gallery-import"),
]
