"""HTTP API for recognition events: read only (events are written by the live pipeline)."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from core.apis import errors
from core.files import private_file
from core.pagination import PageNumberPagination
from core.permissions import IsAuthenticatedUser
from events.models import Event
from events.selectors import event_list
from events.serializers import EventFilterSerializer, EventSerializer
from people.selectors import gallery_resolve

PAGE_PARAMETERS = [
    OpenApiParameter("page", int, description="Page number, from 1."),
    OpenApiParameter("page_size", int, description="Events per page (at most 500)."),
]


class EventListApi(APIView):
    # Any user reads; a write method is then a 405 (not a 403), as the API has no writes at all.
    permission_classes = [IsAuthenticatedUser]
    pagination_class = PageNumberPagination  # read by the schema only: the answer is a page (count, results)

    @extend_schema(parameters=[EventFilterSerializer, *PAGE_PARAMETERS],
                   responses={200: EventSerializer(many=True), **errors(400, 404)})
    def get(self, request):
        filters = EventFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        queryset = event_list(
            camera=data.get("camera"), person_id=data.get("person"), gallery=gallery_resolve(data.get("gallery")),
            unknown=data.get("unknown"), source=data.get("source"), since=data.get("since"),
            until=data.get("until"), open=data.get("open"),
        )
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response(EventSerializer(page, many=True).data)


class EventDetailApi(APIView):
    permission_classes = [IsAuthenticatedUser]

    @extend_schema(responses={200: EventSerializer, **errors(404)})
    def get(self, request, pk):
        return Response(EventSerializer(get_object_or_404(event_list(), pk=pk)).data)


class EventCropApi(APIView):
    """The best face's JPEG crop, for authenticated users only: it is biometric data, so media is
    never served publicly. 404 once purged (retention) or erased (the person was deleted)."""

    permission_classes = [IsAuthenticatedUser]

    @extend_schema(responses={(200, "image/jpeg"): OpenApiTypes.BINARY, **errors(404)})
    def get(self, request, pk):
        return private_file(get_object_or_404(Event.objects.only("id", "crop"), pk=pk).crop, "image/jpeg")
