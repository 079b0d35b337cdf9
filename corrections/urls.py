from django.urls import path

from corrections.apis import CorrectionApi, NegativeCropApi, NegativeDetailApi, NegativeListApi

urlpatterns = [
    path("", CorrectionApi.as_view(), name="correction"),
    path("negatives/", NegativeListApi.as_view(), name="negative-list"),
    path("negatives/<int:pk>/", NegativeDetailApi.as_view(), name="negative-detail"),
    path("negatives/<int:pk>/crop/", NegativeCropApi.as_view(), name="negative-crop"),
]
