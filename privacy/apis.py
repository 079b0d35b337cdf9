"""HTTP API of data rights: a person's data as one archive, a gallery's export and import. Staff only:
the archives hold photos and embeddings."""

from __future__ import annotations

from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from core.apis import BODY_ERRORS, ErrorSerializer, errors
from core.audit.services import audit_context
from core.permissions import IsStaff
from people.models import Person
from people.selectors import gallery_resolve
from privacy.exports import gallery_export, person_export
from privacy.services import gallery_import

ZIP = "application/zip"


def _zip_response(chunks, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(chunks, content_type=ZIP)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "private, no-store"
    return response


class PersonExportApi(APIView):
    """Everything stored about one person, as one zip archive (the right of access): person.json,
    their photos and thumbnails, events.json with the crops, related/ rows of other apps. Audited."""

    permission_classes = [IsStaff]

    @extend_schema(responses={(200, ZIP): OpenApiTypes.BINARY, **errors(404)})
    def get(self, request, pk):
        person = get_object_or_404(Person, pk=pk)
        return _zip_response(person_export(person=person, **audit_context(request)), f"person-{person.pk}.zip")


class GalleryExportApi(APIView):
    """A gallery's people, photos and embeddings with the model id, as one zip archive that
    POST /api/galleries/import/ takes (here or on another service). Audited."""

    permission_classes = [IsStaff]

    @extend_schema(parameters=[OpenApiParameter("gallery", str, description="Gallery id or slug; omitted: every "
                                                "gallery and every person.")],
                   responses={(200, ZIP): OpenApiTypes.BINARY, **errors(400)})
    def get(self, request):
        gallery = gallery_resolve(request.query_params.get("gallery"))
        name = f"gallery-{gallery.slug}.zip" if gallery is not None else "galleries.zip"
        return _zip_response(gallery_export(gallery=gallery, **audit_context(request)), name)


class ImportInputSerializer(serializers.Serializer):
    archive = serializers.FileField(help_text="A zip archive written by GET /api/galleries/export/.")


ImportOutputSerializer = inline_serializer("GalleryImportResult", fields={
    "success": serializers.BooleanField(),
    "people": serializers.IntegerField(),
    "faces": serializers.IntegerField(),
    "encoded": serializers.IntegerField(help_text="Faces stored with the archive's embeddings (same model)."),
    "pending": serializers.IntegerField(help_text="Faces queued for encoding from their photos."),
    "model_id": serializers.CharField(help_text="The archive's embedding model."),
    "reencoded": serializers.BooleanField(help_text="The archive is of another model: its photos are "
                                                    "encoded again by the job."),
    "job_id": serializers.CharField(allow_null=True),
    "galleries": inline_serializer("GalleryImportGalleries", fields={
        "created": serializers.ListField(child=serializers.CharField()),
        "reused": serializers.ListField(child=serializers.CharField()),
    }),
    "mapping": serializers.DictField(child=serializers.IntegerField(),
                                     help_text="The archive's person refs → the new people's ids."),
})

CONFLICT = OpenApiResponse(ErrorSerializer, description="external_id_conflict: the archive's external ids "
                                                        "already in use (details.conflicts); nothing imported.")


class GalleryImportApi(APIView):
    """Import a gallery archive: everything is checked first (size, entries, names, zip bombs, the
    manifest, each photo's checksum and decoding, external_id conflicts), then written in one
    transaction; a refusal leaves nothing behind."""

    engine_bound = True  # decodes every photo with the engine's decoder: the engine lane (config/asgi.py)
    permission_classes = [IsStaff]
    parser_classes = [MultiPartParser]

    @extend_schema(
        request={"multipart/form-data": ImportInputSerializer},
        responses={201: ImportOutputSerializer,
                   202: OpenApiResponse(ImportOutputSerializer, description="Imported; faces of another model "
                                        "(or without embeddings) are being encoded by job_id."),
                   **errors(*BODY_ERRORS), 409: CONFLICT},
    )
    def post(self, request):
        serializer = ImportInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        upload = serializer.validated_data["archive"]
        try:
            result = gallery_import(upload=upload, **audit_context(request))
        finally:
            upload.close()
        body = {
            "success": True, "people": len(result.mapping), "faces": result.faces, "encoded": result.encoded,
            "pending": result.pending, "model_id": result.model_id, "reencoded": result.reencoded,
            "job_id": result.job_id,
            "galleries": {"created": result.galleries_created, "reused": result.galleries_reused},
            "mapping": result.mapping,
        }
        return Response(body, status=status.HTTP_202_ACCEPTED if result.job_id else status.HTTP_201_CREATED)
