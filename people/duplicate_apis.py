"""GET /api/people/duplicates/: pairs of people whose faces are within the match threshold, nearest
first (people.duplicates.duplicate_scan), for staff cleaning a gallery."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from core.apis import errors
from core.parsers import OneValuePerField
from core.permissions import IsStaff
from people.duplicates import DEFAULT_LIMIT, duplicate_scan
from people.selectors import gallery_resolve
from people.serializers import ThresholdField

MAX_LIMIT = 1000


class DuplicateFilterSerializer(OneValuePerField, serializers.Serializer):
    threshold = ThresholdField()
    gallery = serializers.CharField(required=False, allow_blank=True, max_length=200,
                                    help_text="Gallery id or slug: only pairs of two of its members.")
    limit = serializers.IntegerField(required=False, default=DEFAULT_LIMIT, min_value=1, max_value=MAX_LIMIT,
                                     help_text="At most this many pairs, the nearest.")


class DuplicatePairSerializer(serializers.Serializer):
    person_a_id = serializers.IntegerField()
    person_a_name = serializers.CharField()
    face_a_id = serializers.IntegerField(help_text="person A's face closest to person B's.")
    person_b_id = serializers.IntegerField(help_text="Always more than person_a_id.")
    person_b_name = serializers.CharField()
    face_b_id = serializers.IntegerField()
    distance = serializers.FloatField(help_text="Between the two faces: the pair's nearest.")
    face_pairs = serializers.IntegerField(help_text="How many pairs of their faces are within the threshold.")


class DuplicatesOutputSerializer(serializers.Serializer):
    threshold = serializers.FloatField()
    gallery = serializers.IntegerField(allow_null=True, source="gallery_id")
    faces = serializers.IntegerField(help_text="Encoded faces compared (of the current embedding model).")
    people = serializers.IntegerField(help_text="People those faces belong to.")
    count = serializers.IntegerField(source="total", help_text="Pairs found; results holds the nearest `limit`.")
    results = DuplicatePairSerializer(many=True, source="pairs")


class DuplicatePairsApi(APIView):
    permission_classes = [IsStaff]

    @extend_schema(parameters=[DuplicateFilterSerializer],
                   responses={200: DuplicatesOutputSerializer, **errors(400)})
    def get(self, request):
        filters = DuplicateFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        scan = duplicate_scan(threshold=data.get("threshold"), gallery=gallery_resolve(data.get("gallery")),
                              limit=data["limit"])
        return Response(DuplicatesOutputSerializer(scan).data)
