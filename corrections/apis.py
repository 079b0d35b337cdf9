"""HTTP API for corrections: "this face is not X" / "this face is Y", and the negatives kept."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.apis import BODY_ERRORS, errors
from core.audit.services import audit_context
from core.errors import ServiceError
from core.files import private_file
from core.pagination import PageNumberPagination
from core.permissions import IsStaff
from corrections import services
from corrections.models import NegativeFace
from corrections.serializers import (
    CorrectionInputSerializer,
    CorrectionSerializer,
    NegativeFaceSerializer,
    NegativeFilterSerializer,
)
from events.models import Event
from people.models import Person
from unknowns.models import Sighting

EMPTY = {"negative": None, "created": None, "cleared": None, "unknown_sighting_id": None, "cluster_id": None,
         "face_id": None, "duplicate": None, "previous_person_id": None, "warnings": None}


def _row(model, pk: int | None, code: str, what: str):
    if pk is None:
        return None
    row = model.objects.filter(pk=pk).first()
    if row is None:
        raise ServiceError(code, f"No {what} with id {pk}.", status_code=400)
    return row


class CorrectionApi(APIView):
    """Mark a kept face (an event's best face or a sighting) wrong ("not") or right ("is").

    "not": the face becomes a negative example of the person (by default whom it was named after;
    any person may be named), the index stops naming that person for faces closer to it than to
    their own faces, the event/sighting loses that name and joins unknown clustering.
    "is": the stored crop is enrolled for the person through the quality gate (422 with its reason
    codes unless ``force``) and the event/sighting is named after them. 201 when something new was
    stored, 200 when the correction was already there."""

    engine_bound = True  # runs the face engine on the request path ("is" enrols): the engine lane (config/asgi.py)
    permission_classes = [IsStaff]

    @extend_schema(request=CorrectionInputSerializer,
                   responses={200: CorrectionSerializer, 201: CorrectionSerializer, **errors(*BODY_ERRORS, 422)})
    def post(self, request):
        body = CorrectionInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        event = _row(Event, data.get("event"), "unknown_event", "event")
        sighting = _row(Sighting, data.get("sighting"), "unknown_sighting", "sighting")
        person = _row(Person, data.get("person"), "unknown_person", "person")
        context = audit_context(request)
        answer = {**EMPTY, "verdict": data["verdict"], "event_id": event.pk if event else None,
                  "sighting_id": sighting.pk if sighting else None}
        if data["verdict"] == "not":
            done = services.correction_not(person=person, event=event, sighting=sighting, **context)
            negative = done.negative
            new = done.created
            answer.update(person_id=negative.person_id, person_name=negative.person.name,
                          negative=negative, created=done.created,
                          cleared=done.cleared, unknown_sighting_id=done.sighting_id, cluster_id=done.cluster_id)
        else:
            assert person is not None
            named = services.correction_is(person=person, event=event, sighting=sighting, force=data["force"],
                                           **context)
            new = not named.duplicate
            answer.update(person_id=person.pk, person_name=person.name, face_id=named.face.pk,
                          duplicate=named.duplicate, previous_person_id=named.previous_person_id,
                          warnings=named.warnings)
        return Response(CorrectionSerializer(answer).data,
                        status=status.HTTP_201_CREATED if new else status.HTTP_200_OK)


class NegativeListApi(APIView):
    permission_classes = [IsStaff]
    pagination_class = PageNumberPagination  # read by the schema only: the answer is a page

    @extend_schema(parameters=[NegativeFilterSerializer,
                               OpenApiParameter("page", int, description="Page number, from 1."),
                               OpenApiParameter("page_size", int, description="Negatives per page (at most 500).")],
                   responses={200: NegativeFaceSerializer(many=True), **errors(400, 404)})
    def get(self, request):
        filters = NegativeFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        queryset = NegativeFace.objects.select_related("person", "created_by").order_by("-created_at", "-id")
        person_id = filters.validated_data.get("person")
        if person_id is not None:
            _row(Person, person_id, "unknown_person", "person")
            queryset = queryset.filter(person_id=person_id)
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response(NegativeFaceSerializer(page, many=True).data)


class NegativeDetailApi(APIView):
    """DELETE: undo a "not" (the negative and its crop go; audited as correction.undo)."""

    permission_classes = [IsStaff]

    @extend_schema(responses={204: None, **errors(404)})
    def delete(self, request, pk):
        services.negative_delete(negative=get_object_or_404(NegativeFace, pk=pk), **audit_context(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class NegativeCropApi(APIView):
    """The negative's face crop, for staff: biometric data of a stranger, never public media."""

    permission_classes = [IsStaff]

    @extend_schema(responses={(200, "image/jpeg"): OpenApiTypes.BINARY, **errors(404)})
    def get(self, request, pk):
        return private_file(get_object_or_404(NegativeFace.objects.only("id", "crop"), pk=pk).crop, "image/jpeg")
