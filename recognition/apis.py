"""Recognise, batch-recognise, verify, index cache and encoding jobs."""

from __future__ import annotations

import time

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from core.apis import BODY_ERRORS, errors
from core.audit.services import audit_context
from core.errors import ServiceError, error_body
from core.index.holder import index_cache
from core.permissions import IsAuthenticatedUser, IsStaff
from face_engine.types import ImageError
from jobs.services import batch_generate_encodings, regenerate_all_encodings
from people.models import Face
from people.selectors import gallery_resolve
from people.services import read_upload
from recognition import services
from recognition.serializers import (
    BatchRecognizeInputSerializer,
    CacheActionSerializer,
    EncodingsInputSerializer,
    RecognizeInputSerializer,
    VerifyInputSerializer,
)


def _elapsed_ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)


def _options(data) -> services.RecognizeOptions:
    return services.RecognizeOptions(
        match_count=data["match_count"],
        threshold=data.get("threshold"),
        return_all_matches=data["return_all_matches"],
        gallery=gallery_resolve(data.get("gallery")),
        keep=data.get("keep", "none"),
    )


class RecognizeApi(APIView):
    engine_bound = True  # runs the face engine on the request path: the engine lane (config/asgi.py)
    permission_classes = [IsAuthenticatedUser]
    parser_classes = [MultiPartParser]

    @extend_schema(request={"multipart/form-data": RecognizeInputSerializer},
                   responses={200: OpenApiTypes.OBJECT, **errors(*BODY_ERRORS)})
    def post(self, request):
        start = time.perf_counter()
        serializer = RecognizeInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        options = _options(data)
        result = services.recognize_images([read_upload(data["image"])], options, **audit_context(request))[0]
        if isinstance(result, ImageError):
            raise result
        return Response({**result, "processing_time_ms": _elapsed_ms(start)})


class BatchRecognizeApi(APIView):
    engine_bound = True  # runs the face engine on the request path: the engine lane (config/asgi.py)
    permission_classes = [IsAuthenticatedUser]
    parser_classes = [MultiPartParser]

    @extend_schema(request={"multipart/form-data": BatchRecognizeInputSerializer},
                   responses={200: OpenApiResponse(OpenApiTypes.OBJECT, description="Per image: the result or "
                                                   "its error (a bad image fails alone)."),
                              **errors(*BODY_ERRORS)})
    def post(self, request):
        start = time.perf_counter()
        serializer = BatchRecognizeInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        options = _options(data)
        blobs, refused = [], {}
        for i, upload in enumerate(data["images"]):
            try:
                blobs.append(read_upload(upload))
            except ServiceError as exc:
                refused[i] = error_body(exc.error_code, exc.message)
                blobs.append(b"")
        # Refused uploads go in empty (the engine fails them at once) so the audit counts them.
        results = services.recognize_images(blobs, options, action="recognition.batch", **audit_context(request))
        per_image: list[dict] = [
            refused[i] if i in refused
            else error_body(result.code, result.message) if isinstance(result, ImageError) else result
            for i, result in enumerate(results)
        ]
        for i, (upload, body) in enumerate(zip(data["images"], per_image, strict=True)):
            body["index"], body["filename"] = i, upload.name
        failed = sum(1 for body in per_image if not body["success"])
        return Response({
            "success": failed < len(per_image),
            "total_images": len(per_image),
            "processed": len(per_image) - failed,
            "failed": failed,
            "results": per_image,
            "processing_time_ms": _elapsed_ms(start),
        })


class VerifyApi(APIView):
    engine_bound = True  # runs the face engine on the request path: the engine lane (config/asgi.py)
    permission_classes = [IsAuthenticatedUser]
    parser_classes = [MultiPartParser]

    @extend_schema(request={"multipart/form-data": VerifyInputSerializer},
                   responses={200: OpenApiTypes.OBJECT, **errors(*BODY_ERRORS, 422)})
    def post(self, request):
        start = time.perf_counter()
        serializer = VerifyInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if "image_a" in data:
            body = services.verify(image_a=read_upload(data["image_a"]), image_b=read_upload(data["image_b"]),
                                   threshold=data.get("threshold"), **audit_context(request))
        else:
            body = services.verify(image_a=read_upload(data["image"]), person=data["person_id"],
                                   threshold=data.get("threshold"), **audit_context(request))
        return Response({**body, "processing_time_ms": _elapsed_ms(start)})


class CacheApi(APIView):
    permission_classes = [IsStaff]
    parser_classes = [JSONParser, MultiPartParser]

    @extend_schema(request=CacheActionSerializer, responses={200: OpenApiTypes.OBJECT, **errors(*BODY_ERRORS)})
    def post(self, request):
        serializer = CacheActionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if serializer.validated_data["action"] == "reload":
            loaded = len(index_cache.reload())
            message = (f"Index rebuild asked of every process (each rebuilds in the background); "
                       f"{loaded} encodings answering here now.")
        else:
            index_cache.clear()
            loaded = 0
            message = "Index cleared in this process; it is rebuilt on the next request."
        return Response({"success": True, "message": message, "encodings_loaded": loaded})


class EncodingsApi(APIView):
    permission_classes = [IsStaff]
    parser_classes = [JSONParser]

    @extend_schema(request=EncodingsInputSerializer, responses={202: OpenApiTypes.OBJECT, **errors(*BODY_ERRORS)})
    def post(self, request):
        serializer = EncodingsInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        scope = serializer.validated_data["scope"]
        request_id = audit_context(request)["request_id"]
        if scope == "all":
            job = regenerate_all_encodings(user=request.user, request_id=request_id)
        elif scope == "missing":
            job = batch_generate_encodings(None, user=request.user, request_id=request_id)
        else:
            known = set(Face.objects.filter(pk__in=scope).values_list("id", flat=True))
            unknown = sorted(set(scope) - known)
            if unknown:
                raise ServiceError("unknown_faces", f"No faces with ids {unknown}.", status_code=400)
            job = batch_generate_encodings(scope, user=request.user, request_id=request_id)
        return Response({"success": True, "job_id": str(job.pk), "state": job.state,
                         "total": job.total}, status=status.HTTP_202_ACCEPTED)
