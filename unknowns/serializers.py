from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.ids import IdField
from core.parsers import OneValuePerField
from people.serializers import GalleryRefField
from streams.models import Camera
from streams.selectors import camera_by_ref
from unknowns.models import Sighting, UnknownCluster
from unknowns.selectors import cluster_cameras
from unknowns.services import best_sightings

BEST_CROPS = 6  # best faces shown with a cluster
RECENT_SIGHTINGS = 200  # sightings listed in a cluster's detail (ids for a split)
MAX_SPLIT_IDS = 10000  # a longer IN list overflows SQLite's parameters


class ClusterFilterSerializer(OneValuePerField, serializers.Serializer):
    state = serializers.ChoiceField(choices=UnknownCluster.State.choices, required=False)
    camera = serializers.CharField(required=False, max_length=200, help_text="Camera id or name: clusters seen there.")
    since = serializers.DateTimeField(required=False, help_text="ISO 8601; clusters last seen at or after.")

    def validate_camera(self, value: str) -> Camera:
        camera = camera_by_ref(value)
        if camera is None:
            raise serializers.ValidationError(f"No camera with id or name {value.strip()!r}.")
        return camera


class SightingSerializer(serializers.ModelSerializer):
    crop_url = serializers.SerializerMethodField()
    cluster_id = serializers.IntegerField(read_only=True, allow_null=True)
    event_id = serializers.IntegerField(read_only=True, allow_null=True)
    camera_id = serializers.IntegerField(read_only=True, allow_null=True)
    matched_person_id = serializers.IntegerField(read_only=True, allow_null=True)
    has_embedding = serializers.SerializerMethodField()

    class Meta:
        model = Sighting
        fields = ["id", "source", "event_id", "camera_id", "source_name", "seen_at", "box", "face_size",
                  "sharpness", "matched_person_id", "distance", "cluster_id", "crop_url", "has_embedding"]
        read_only_fields = fields

    def get_crop_url(self, sighting: Sighting) -> str | None:
        return reverse("sighting-crop", args=[sighting.pk]) if sighting.crop else None

    def get_has_embedding(self, sighting: Sighting) -> bool:
        return bool(sighting.embedding)


class ClusterSerializer(serializers.ModelSerializer):
    name = serializers.SerializerMethodField()
    person_id = serializers.IntegerField(read_only=True, allow_null=True)
    person_name = serializers.SerializerMethodField()
    best_sighting_ids = serializers.SerializerMethodField()

    class Meta:
        model = UnknownCluster
        fields = ["id", "number", "name", "state", "person_id", "person_name", "sighting_count", "first_seen",
                  "last_seen", "named_at", "best_sighting_ids"]
        read_only_fields = fields

    def get_name(self, cluster: UnknownCluster) -> str:
        return str(cluster)

    def get_person_name(self, cluster: UnknownCluster) -> str | None:
        return cluster.person.name if cluster.person_id else None

    @extend_schema_field(serializers.ListField(child=serializers.IntegerField()))
    def get_best_sighting_ids(self, cluster: UnknownCluster) -> list[int]:
        return [s.pk for s in best_sightings(cluster, BEST_CROPS)]


class CameraSeenSerializer(serializers.Serializer):
    camera_id = serializers.IntegerField(allow_null=True)
    source_name = serializers.CharField()
    sightings = serializers.IntegerField()
    last_seen = serializers.DateTimeField()


class ClusterDetailSerializer(ClusterSerializer):
    cameras = serializers.SerializerMethodField()
    best_crops = serializers.SerializerMethodField()
    sightings = serializers.SerializerMethodField()

    class Meta(ClusterSerializer.Meta):
        fields = [*ClusterSerializer.Meta.fields, "cameras", "best_crops", "sightings"]
        read_only_fields = fields

    @extend_schema_field(CameraSeenSerializer(many=True))
    def get_cameras(self, cluster: UnknownCluster) -> list[dict]:
        return CameraSeenSerializer(cluster_cameras(cluster), many=True).data

    @extend_schema_field(SightingSerializer(many=True))
    def get_best_crops(self, cluster: UnknownCluster) -> list[dict]:
        return SightingSerializer(best_sightings(cluster, BEST_CROPS), many=True).data

    @extend_schema_field(SightingSerializer(many=True))
    def get_sightings(self, cluster: UnknownCluster) -> list[dict]:
        recent = Sighting.objects.filter(cluster=cluster).order_by("-seen_at", "-id")[:RECENT_SIGHTINGS]
        return SightingSerializer(recent, many=True).data


class NameInputSerializer(OneValuePerField, serializers.Serializer):
    person = IdField(required=False, help_text="An existing person to give the cluster to.")
    name = serializers.CharField(required=False, max_length=200, help_text="A new person's name.")
    galleries = serializers.ListField(child=GalleryRefField(), required=False, max_length=200,
                                      help_text="The new person's galleries (ids or slugs); with name only.")
    force = serializers.BooleanField(required=False, default=False,
                                     help_text="Enrol faces the quality gate or the duplicate check would refuse.")

    def validate(self, data: dict) -> dict:
        if ("person" in data) == ("name" in data):
            raise serializers.ValidationError("Send exactly one of person (an id) or name (a new person).")
        if "galleries" in data and "person" in data:
            raise serializers.ValidationError({"galleries": "Galleries go with a new person (name) only."})
        return data


class MergeInputSerializer(OneValuePerField, serializers.Serializer):
    other = IdField(help_text="The cluster merged into this one (it is deleted).")


class SplitInputSerializer(OneValuePerField, serializers.Serializer):
    sightings = serializers.ListField(
        child=IdField(), allow_empty=False, max_length=MAX_SPLIT_IDS,
        help_text="Sightings of this cluster that become a new cluster (not all of them).")


class NameFaceSerializer(serializers.Serializer):
    sighting_id = serializers.IntegerField()
    face_id = serializers.IntegerField(allow_null=True)
    duplicate = serializers.BooleanField()
    error = serializers.JSONField(required=False, help_text="Why the face was refused: code, message, details.")
    warnings = serializers.JSONField(required=False, help_text="What force overrode.")


class NameOutputSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    cluster = ClusterDetailSerializer()
    person_id = serializers.IntegerField()
    person_name = serializers.CharField()
    person_created = serializers.BooleanField()
    enrolled = serializers.IntegerField(help_text="Faces enrolled (new or already the person's).")
    events = serializers.IntegerField(help_text="Past events of the cluster now naming the person.")
    faces = NameFaceSerializer(many=True)


class ClusterOutputSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    cluster = ClusterDetailSerializer()


class SplitOutputSerializer(ClusterOutputSerializer):
    split_from = ClusterDetailSerializer(help_text="The cluster the sightings left.")

