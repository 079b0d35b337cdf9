"""HTTP API for galleries, people and their faces. Views validate, call a service, serialize."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import generics, serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from core.apis import BODY_ERRORS, errors
from core.audit.services import audit_context
from core.errors import error_body
from core.files import private_file
from core.pagination import PageNumberPagination
from jobs.services import batch_generate_encodings
from people import selectors, services
from people.models import Face, Person
from people.selectors import gallery_resolve
from people.serializers import (
    EnrolInputSerializer,
    FaceSerializer,
    GallerySerializer,
    PersonInputSerializer,
    PersonOutputSerializer,
)


@extend_schema_view(
    get=extend_schema(parameters=[OpenApiParameter("search", str, description="Part of the name or slug.")],
                      responses={200: GallerySerializer(many=True), **errors(400, 404)}),
    post=extend_schema(responses={201: GallerySerializer, **errors(*BODY_ERRORS)}),
)
class GalleryListCreateApi(generics.ListCreateAPIView):
    serializer_class = GallerySerializer

    def get_queryset(self):
        return selectors.gallery_list(search=self.request.query_params.get("search", ""))

    def perform_create(self, serializer):
        serializer.instance = services.gallery_create(**serializer.validated_data, **audit_context(self.request))


@extend_schema_view(
    get=extend_schema(responses={200: GallerySerializer, **errors(404)}),
    put=extend_schema(responses={200: GallerySerializer, **errors(404, *BODY_ERRORS)}),
    patch=extend_schema(responses={200: GallerySerializer, **errors(404, *BODY_ERRORS)}),
    delete=extend_schema(responses={204: None, **errors(404)}),
)
class GalleryDetailApi(generics.RetrieveUpdateDestroyAPIView):
    serializer_class = GallerySerializer

    def get_queryset(self):
        return selectors.gallery_list()

    def perform_update(self, serializer):
        serializer.instance = services.gallery_update(gallery=serializer.instance, **serializer.validated_data,
                                                      **audit_context(self.request))

    def perform_destroy(self, instance):
        services.gallery_delete(gallery=instance, **audit_context(self.request))


PERSON_FILTERS = [
    OpenApiParameter("search", str, description="Part of the name or external_id."),
    OpenApiParameter("gallery", str, description="Gallery id or slug."),
]


class PersonListCreateApi(APIView):
    pagination_class = PageNumberPagination  # read by the schema only: the answer is a page (count, results)

    @extend_schema(parameters=PERSON_FILTERS, responses={200: PersonOutputSerializer(many=True), **errors(400, 404)})
    def get(self, request):
        queryset = selectors.person_list(
            search=request.query_params.get("search", "").strip(),
            gallery=gallery_resolve(request.query_params.get("gallery")),
        )
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response(PersonOutputSerializer(page, many=True).data)

    @extend_schema(request=PersonInputSerializer, responses={201: PersonOutputSerializer, **errors(*BODY_ERRORS)})
    def post(self, request):
        serializer = PersonInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        person = services.person_create(**serializer.validated_data, **audit_context(request))
        person = selectors.person_list().get(pk=person.pk)
        return Response(PersonOutputSerializer(person).data, status=status.HTTP_201_CREATED)


class PersonDetailApi(APIView):
    def _get(self, pk) -> Person:
        return get_object_or_404(selectors.person_list(), pk=pk)

    @extend_schema(responses={200: PersonOutputSerializer, **errors(404)})
    def get(self, request, pk):
        return Response(PersonOutputSerializer(self._get(pk)).data)

    @extend_schema(request=PersonInputSerializer, responses={200: PersonOutputSerializer, **errors(404, *BODY_ERRORS)})
    def put(self, request, pk):
        return self._update(request, pk, partial=False)

    @extend_schema(request=PersonInputSerializer, responses={200: PersonOutputSerializer, **errors(404, *BODY_ERRORS)})
    def patch(self, request, pk):
        return self._update(request, pk, partial=True)

    def _update(self, request, pk, *, partial):
        person = self._get(pk)
        serializer = PersonInputSerializer(instance=person, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        services.person_update(person=person, **serializer.validated_data, **audit_context(request))
        return Response(PersonOutputSerializer(self._get(pk)).data)

    @extend_schema(responses={204: None, **errors(404)})
    def delete(self, request, pk):
        services.person_delete(person=get_object_or_404(Person, pk=pk), **audit_context(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class PersonFacesApi(APIView):
    engine_bound = {"POST"}  # enrolment runs the face engine (a list does not): config/asgi.py
    parser_classes = [MultiPartParser]

    @extend_schema(
        parameters=[OpenApiParameter("status", str, enum=["pending", "encoded", "no_face", "multiple_faces", "failed",
                                                           "refused"],
                                     description="Only faces in this status.")],
        responses={200: FaceSerializer(many=True), **errors(400, 404)},
    )
    def get(self, request, pk):
        person = get_object_or_404(Person, pk=pk)
        faces = selectors.face_list(person=person, status=request.query_params.get("status", ""))
        return Response(FaceSerializer(faces, many=True, context={"request": request}).data)

    @extend_schema(
        request={"multipart/form-data": inline_serializer("EnrolRequest", fields={
            "image": serializers.ListField(child=serializers.FileField()),
            "largest": serializers.BooleanField(required=False),
            "async": serializers.BooleanField(required=False),
            "force": serializers.BooleanField(required=False, help_text=(
                "Enrol over the quality gate and the duplicate check; what was overridden comes back as "
                "warnings, and the face is marked quality.forced.")),
        })},
        responses={
            200: OpenApiResponse(OpenApiTypes.OBJECT, description="The same bytes were already enrolled "
                                 "(duplicate: true), or async with nothing new to encode."),
            201: OpenApiResponse(OpenApiTypes.OBJECT, description="One file: the face (with success and "
                                 "duplicate); several: the results per file."),
            202: OpenApiResponse(OpenApiTypes.OBJECT, description="async: job_id and the pending faces."),
            207: OpenApiResponse(OpenApiTypes.OBJECT, description="Several files, some enrolled: the results."),
            **errors(404, *BODY_ERRORS),
            422: OpenApiResponse(OpenApiTypes.OBJECT, description="One file refused (the error shape: no_face, "
                                 "multiple_faces; the quality gate's face_too_small, blurry, extreme_pose, "
                                 "low_confidence, cut_off with details.reasons and details.quality; "
                                 "possible_duplicate with details.person_id, person_name, face_id, distance), "
                                 "or several and none enrolled (the results)."),
        },
    )
    def post(self, request, pk):
        person = get_object_or_404(Person, pk=pk)
        serializer = EnrolInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        who = audit_context(request)
        outcomes = services.face_enroll(person=person, uploads=data["image"], largest=data["largest"],
                                        run_async=data["run_async"], force=data["force"], **who)
        context = {"request": request}
        if data["run_async"]:
            new_ids = [o.face.pk for o in outcomes if o.face is not None and not o.duplicate]
            job = batch_generate_encodings(new_ids, largest=data["largest"], user=who["actor"],
                                           request_id=who["request_id"]) if new_ids else None
            body = {
                "success": all(o.error is None for o in outcomes),
                "job_id": str(job.pk) if job else None,
                "results": [_outcome_body(o, context) for o in outcomes],
            }
            code = status.HTTP_202_ACCEPTED if job else (
                status.HTTP_200_OK if all(o.face for o in outcomes) else status.HTTP_422_UNPROCESSABLE_ENTITY)
            return Response(body, status=code)
        if len(outcomes) == 1:
            outcome = outcomes[0]
            if outcome.error is not None:
                return _refusal(outcome)
            body = {"success": True, "duplicate": outcome.duplicate,
                    **FaceSerializer(outcome.face, context=context).data, "warnings": outcome.warnings}
            return Response(body, status=status.HTTP_200_OK if outcome.duplicate else status.HTTP_201_CREATED)
        enrolled = sum(1 for o in outcomes if o.face is not None)
        body = {
            "success": enrolled == len(outcomes),
            "enrolled": enrolled,
            "refused": len(outcomes) - enrolled,
            "results": [_outcome_body(o, context) for o in outcomes],
        }
        code = (status.HTTP_201_CREATED if enrolled == len(outcomes)
                else status.HTTP_422_UNPROCESSABLE_ENTITY if enrolled == 0 else status.HTTP_207_MULTI_STATUS)
        return Response(body, status=code)


def _outcome_body(outcome, context) -> dict:
    if outcome.error is not None:
        body = error_body(outcome.error.error_code, outcome.error.message, outcome.error.details)
        return {"filename": outcome.filename, **body}
    return {"filename": outcome.filename, "success": True, "duplicate": outcome.duplicate,
            "face": FaceSerializer(outcome.face, context=context).data, "warnings": outcome.warnings}


def _refusal(outcome) -> Response:
    error = outcome.error
    return Response(error_body(error.error_code, f"{outcome.filename}: {error.message}", error.details),
                    status=error.status_code)


class FaceDetailApi(APIView):
    @extend_schema(responses={200: FaceSerializer, **errors(404)})
    def get(self, request, pk):
        face = get_object_or_404(Face, pk=pk)
        return Response(FaceSerializer(face, context={"request": request}).data)

    @extend_schema(responses={204: None, **errors(404)})
    def delete(self, request, pk):
        services.face_delete(face=get_object_or_404(Face, pk=pk), **audit_context(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class FaceFileApi(APIView):
    """The stored photo or the face thumbnail, for authenticated users only: faces are personal
    data, so media is never served publicly."""

    kind = "image"

    @extend_schema(responses={(200, "image/*"): OpenApiTypes.BINARY, **errors(404)})
    def get(self, request, pk):
        face = get_object_or_404(Face, pk=pk)
        return private_file(face.image if self.kind == "image" else face.thumbnail)
