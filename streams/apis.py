"""HTTP API for cameras: any user reads (configuration and live status), staff write. Views
validate, call one service and serialize; the services write configuration columns only."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.apis import BODY_ERRORS, errors
from core.audit.services import audit_context
from core.pagination import PageNumberPagination
from people.selectors import gallery_resolve
from streams import selectors, services
from streams.models import Camera
from streams.serializers import CameraFilterSerializer, CameraInputSerializer, CameraOutputSerializer


def _validated(serializer: CameraInputSerializer) -> dict:
    """The serializer's data, or one 400 for everything refused (see services.refusal for the code)."""
    if serializer.is_valid():
        return serializer.validated_data
    errors = {}
    for field, details in serializer.errors.items():
        first = details[0] if isinstance(details, list) and details else details
        errors[field] = services.CameraFieldError(str(first), getattr(first, "code", None) or "invalid")
    error = services.refusal(errors)
    error.details = serializer.errors  # every message of every field, as other validation errors
    raise error


class CameraListCreateApi(APIView):
    pagination_class = PageNumberPagination  # read by the schema only: the answer is a page (count, results)

    @extend_schema(parameters=[CameraFilterSerializer], responses={200: CameraOutputSerializer(many=True),
                                                                   **errors(400, 404)})
    def get(self, request):
        filters = CameraFilterSerializer(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        queryset = selectors.camera_list(enabled=data.get("enabled"), gallery=gallery_resolve(data.get("gallery")),
                                         search=data.get("search", "").strip())
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response(CameraOutputSerializer(page, many=True).data)

    @extend_schema(request=CameraInputSerializer, responses={201: CameraOutputSerializer, **errors(*BODY_ERRORS)})
    def post(self, request):
        data = _validated(CameraInputSerializer(data=request.data))
        camera = services.camera_create(**data, **audit_context(request))
        return Response(CameraOutputSerializer(camera).data, status=status.HTTP_201_CREATED)


class CameraDetailApi(APIView):
    def _get(self, pk) -> Camera:
        return get_object_or_404(selectors.camera_list(), pk=pk)

    @extend_schema(responses={200: CameraOutputSerializer, **errors(404)})
    def get(self, request, pk):
        return Response(CameraOutputSerializer(self._get(pk)).data)

    @extend_schema(request=CameraInputSerializer, responses={200: CameraOutputSerializer, **errors(404, *BODY_ERRORS)})
    def put(self, request, pk):
        return self._update(request, pk, partial=False)

    @extend_schema(request=CameraInputSerializer, responses={200: CameraOutputSerializer, **errors(404, *BODY_ERRORS)})
    def patch(self, request, pk):
        return self._update(request, pk, partial=True)

    def _update(self, request, pk, *, partial):
        camera = self._get(pk)
        data = _validated(CameraInputSerializer(instance=camera, data=request.data, partial=partial))
        services.camera_update(camera=camera, **data, **audit_context(request))
        # Read again: the answer shows the status the worker wrote, not this request's copy of it.
        return Response(CameraOutputSerializer(self._get(pk)).data)

    @extend_schema(responses={204: None, **errors(404)})
    def delete(self, request, pk):
        services.camera_delete(camera=self._get(pk), **audit_context(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
