"""HTTP API for unknown identities: any user reads clusters and sighting crops; staff name, merge,
split and discard clusters (each writes people's biometric data or deletes it)."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import APIView

from core.apis import BODY_ERRORS, ErrorSerializer, errors
from core.audit.services import audit_context
from core.errors import ServiceError
from core.files import private_file
from core.pagination import PageNumberPagination
from core.permissions import IsAuthenticatedUser, IsStaff
from people.models import Person
from unknowns import services
from unknowns.models import Sighting, UnknownCluster
from unknowns.selectors import cluster_list
from unknowns.serializers import (
    ClusterDetailSerializer,
    ClusterFilterSerializer,
    ClusterOutputSerializer,
    ClusterSerializer,
    MergeInputSerializer,
    NameInputSerializer,
    NameOutputSerializer,
    SplitInputSerializer,
    SplitOutputSerializer,
)

PAGE_PARAMETERS = [
    OpenApiParameter("page", int, description="Page number, from 1."),
    OpenApiParameter("page_size", int, description="Clusters per page (at most 500)."),
]
CONFLICT = {409: OpenApiResponse(ErrorSerializer, description="cluster_named or cluster_discarded: the cluster "
                                                                "(or the other one) is not open any more.")}
NAME_REFUSED = {422: OpenApiResponse(ErrorSerializer, description="no_faces_to_enrol, or no face enrolled "
                                                                     "(no_face_enrolled or the one face's gate "
                                                                     "reason): details.faces says why per face.")}


def _cluster(pk) -> UnknownCluster:
    return get_object_or_404(UnknownCluster, pk=pk)


def _detail(cluster: UnknownCluster) -> dict:
    return ClusterDetailSerializer(cluster_list().get(pk=cluster.pk)).data


class ClusterListApi(APIView):
    permission_classes = [IsAuthenticatedUser]
    pagination_class = PageNumberPagination  # read by the schema only: the answer is a page (count, results)

    @extend_schema(parameters=[ClusterFilterSerializer, *PAGE_PARAMETERS],
                   responses={200: ClusterSerializer(many=True), **errors(400, 404)})
    def get(self, request):
        filters = ClusterFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        queryset = cluster_list(state=data.get("state"), camera=data.get("camera"), since=data.get("since"))
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response(ClusterSerializer(page, many=True).data)


class ClusterDetailApi(APIView):
    permission_classes = [IsAuthenticatedUser]

    @extend_schema(responses={200: ClusterDetailSerializer, **errors(404)})
    def get(self, request, pk):
        return Response(ClusterDetailSerializer(get_object_or_404(cluster_list(), pk=pk)).data)


class ClusterNameApi(APIView):
    engine_bound = True  # runs the face engine on the request path (it enrols): the engine lane (config/asgi.py)
    permission_classes = [IsStaff]
    parser_classes = [JSONParser]

    @extend_schema(request=NameInputSerializer,
                   responses={200: NameOutputSerializer, **errors(404, *BODY_ERRORS), **CONFLICT, **NAME_REFUSED})
    def post(self, request, pk):
        cluster = _cluster(pk)
        serializer = NameInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        person = None
        if "person" in data:
            person = Person.objects.filter(pk=data["person"]).first()
            if person is None:
                raise ServiceError("unknown_person", f"No person with id {data['person']}.", status_code=400)
        result = services.cluster_name(cluster=cluster, person=person, name=data.get("name"),
                                       galleries=data.get("galleries", ()), force=data["force"],
                                       **audit_context(request))
        return Response({
            "success": True, "cluster": _detail(result.cluster), "person_id": result.person.pk,
            "person_name": result.person.name, "person_created": result.person_created,
            "enrolled": result.enrolled, "events": result.events, "faces": result.faces,
        })


class ClusterMergeApi(APIView):
    permission_classes = [IsStaff]
    parser_classes = [JSONParser]

    @extend_schema(request=MergeInputSerializer,
                   responses={200: ClusterOutputSerializer, **errors(404, *BODY_ERRORS), **CONFLICT})
    def post(self, request, pk):
        cluster = _cluster(pk)
        serializer = MergeInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        other_pk = serializer.validated_data["other"]
        other = UnknownCluster.objects.filter(pk=other_pk).first()
        if other is None:
            raise ServiceError("unknown_cluster", f"No unknown cluster with id {other_pk}.", status_code=400)
        merged = services.cluster_merge(cluster=cluster, other=other, **audit_context(request))
        return Response({"success": True, "cluster": _detail(merged)})


class ClusterSplitApi(APIView):
    permission_classes = [IsStaff]
    parser_classes = [JSONParser]

    @extend_schema(request=SplitInputSerializer,
                   responses={201: SplitOutputSerializer, **errors(404, *BODY_ERRORS), **CONFLICT})
    def post(self, request, pk):
        cluster = _cluster(pk)
        serializer = SplitInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        new = services.cluster_split(cluster=cluster, sighting_ids=serializer.validated_data["sightings"],
                                     **audit_context(request))
        return Response({"success": True, "cluster": _detail(new), "split_from": _detail(cluster)}, status=201)


class ClusterDiscardApi(APIView):
    permission_classes = [IsStaff]
    parser_classes = [JSONParser]

    @extend_schema(request=None, responses={200: ClusterOutputSerializer, **errors(404, 400), **CONFLICT})
    def post(self, request, pk):
        discarded = services.cluster_discard(cluster=_cluster(pk), **audit_context(request))
        return Response({"success": True, "cluster": _detail(discarded)})


class SightingCropApi(APIView):
    """A sighting's JPEG crop, for authenticated users only: it is biometric data, so media is
    never served publicly. 404 once purged (retention), discarded or erased."""

    permission_classes = [IsAuthenticatedUser]

    @extend_schema(responses={(200, "image/jpeg"): OpenApiTypes.BINARY, **errors(404)})
    def get(self, request, pk):
        return private_file(get_object_or_404(Sighting.objects.only("id", "crop"), pk=pk).crop, "image/jpeg")
