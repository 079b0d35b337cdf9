"""HTTP API of attendance: read only, for any authenticated user; JSON, or CSV with ``?format=csv``
(or ``Accept: text/csv``)."""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from attendance.exports import day_csv, day_filename, range_csv, range_filename
from attendance.selectors import attendance_day, attendance_range, default_zone, local_today
from attendance.serializers import DayQuerySerializer, RangeQuerySerializer, day_payload, range_payload
from core.apis import errors
from core.permissions import IsAuthenticatedUser
from people.selectors import gallery_resolve

# Errors are JSON in the error shape even when CSV was asked for (_SheetApi.finalize_response).
RESPONSES = {(200, "application/json"): OpenApiTypes.OBJECT, (200, "text/csv"): OpenApiTypes.STR,
             **{(code, "application/json"): response for code, response in errors(400).items()}}
FORMAT_PARAMETER = OpenApiParameter("format", str, enum=["json", "csv"],
                                    description="csv: one row per member, as a file (default json).")


class CSVRenderer(BaseRenderer):
    """Lets DRF's content negotiation accept ``?format=csv`` (URL_FORMAT_OVERRIDE) and
    ``Accept: text/csv``; the view writes the CSV text itself."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return data.encode(self.charset) if isinstance(data, str) else b""


class _SheetApi(APIView):
    permission_classes = [IsAuthenticatedUser]
    renderer_classes = [*api_settings.DEFAULT_RENDERER_CLASSES, CSVRenderer]

    def perform_content_negotiation(self, request, force=False):
        try:
            return super().perform_content_negotiation(request, force)
        except Http404:  # DRF's answer to a ?format= that names no renderer
            raise exceptions.ValidationError({"format": ["Use json or csv."]}) from None

    def finalize_response(self, request, response, *args, **kwargs):
        # An error is JSON in the project's shape even when CSV was asked for.
        if response.status_code >= 400 and isinstance(getattr(request, "accepted_renderer", None), CSVRenderer):
            request.accepted_renderer, request.accepted_media_type = JSONRenderer(), JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)

    @staticmethod
    def wants_csv(request) -> bool:
        return isinstance(request.accepted_renderer, CSVRenderer)

    @staticmethod
    def csv_response(text: str, filename: str) -> Response:
        return Response(text, content_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})


class AttendanceDayApi(_SheetApi):
    """Each current member of a gallery on one local day: present, first and last seen, cameras."""

    @extend_schema(parameters=[DayQuerySerializer, FORMAT_PARAMETER], responses=RESPONSES)
    def get(self, request):
        query = DayQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        gallery = gallery_resolve(data["gallery"])
        tz = data.get("tz") or default_zone()
        sheet = attendance_day(gallery=gallery, day=data.get("date") or local_today(tz), tz=tz,
                               camera=data.get("camera"))
        if self.wants_csv(request):
            return self.csv_response(day_csv(sheet), day_filename(sheet))
        return Response(day_payload(sheet))


class AttendanceSummaryApi(_SheetApi):
    """Each current member of a gallery over a range of local days: the days present, first and
    last seen."""

    @extend_schema(parameters=[RangeQuerySerializer, FORMAT_PARAMETER], responses=RESPONSES)
    def get(self, request):
        query = RangeQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        gallery = gallery_resolve(data["gallery"])
        summary = attendance_range(gallery=gallery, start=data["start"], end=data["end"],
                                   tz=data.get("tz") or default_zone(), camera=data.get("camera"))
        if self.wants_csv(request):
            return self.csv_response(range_csv(summary), range_filename(summary))
        return Response(range_payload(summary))
