from __future__ import annotations

from django.contrib.auth import authenticate
from django.core.cache import cache
from django.db import connection
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import Throttled
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from core.audit.services import audit_context
from core.authentication import token_expires, token_issue, token_revoke
from core.errors import error_body
from core.index.holder import index_cache
from core.metrics import metrics
from core.permissions import IsAuthenticatedUser
from core.serving import snapshot as serving_snapshot
from core.throttling import AccountFailures, TokenAddressThrottle
from face_engine.registry import loaded_pipelines


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable, machine-readable: see the API reference's table.")
    message = serializers.CharField()
    details = serializers.JSONField(required=False, help_text="Validation errors per field, or the boxes found.")


class ErrorSerializer(serializers.Serializer):
    """The one error shape (core/errors.py), declared once for the schema."""

    success = serializers.BooleanField(help_text="Always false.")
    error = ErrorDetailSerializer()


_ERROR_MEANINGS = {
    400: "Refused input: invalid (see details), parse_error, empty_file, not_an_image, corrupt_image, ...",
    401: "not_authenticated or authentication_failed.",
    403: "permission_denied (staff only, or a refused session).",
    404: "not_found.",
    413: "file_too_large, image_too_large, or a request body over the limits.",
    415: "unsupported_media_type (request content type) or unsupported_format (image format).",
    422: "no_face, multiple_faces, duplicate_upload, no_encoded_faces.",
    429: "throttled.",
    503: "database_unavailable.",
}


def errors(*statuses: int, auth: bool = True) -> dict[int, OpenApiResponse]:
    """The error answers of an operation for ``responses=``: ``statuses`` (the ones its input can
    cause), 401 and 403 when it needs a user, 429 (throttling) and 503 (database) everywhere. They
    all share the error shape; the schema must list them, or conformance checks (and clients
    generated from the schema) take a documented refusal for a protocol violation."""
    codes = {*statuses, 429, 503} | ({401, 403} if auth else set())
    return {code: OpenApiResponse(ErrorSerializer, description=_ERROR_MEANINGS[code]) for code in sorted(codes)}


# Operations whose input is a request body can also be refused for its type, size or syntax.
BODY_ERRORS = (400, 413, 415)


class TokenInputSerializer(serializers.Serializer):
    # Bounded: a username longer than any account's is wrong anyway, and a megabyte password would
    # only make the hasher work for nothing.
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, style={"input_type": "password"}, trim_whitespace=False)


class TokenOutputSerializer(serializers.Serializer):
    token = serializers.CharField()
    expires = serializers.DateTimeField(allow_null=True, help_text="When the token stops working (null: never).")


class TokenApi(APIView):
    """POST: exchange a username and password for the user's API token (its current one while it
    has not expired). DELETE: revoke the token of the caller (204); the next request with it is a 401.

    Asking for a token reads no credential (a stale `Authorization` header must not stand in the
    way); it is limited per address (DRF throttle) and per account (failed passwords, counted from
    every address: spreading a guessing attack over many addresses does not get past it)."""

    def _method(self) -> str | None:
        # Django's request in get_authenticators (View.setup: DRF's request is built from them);
        # the schema generator's mock request per method; None otherwise.
        return getattr(self.request, "method", None)

    def get_authenticators(self):
        return super().get_authenticators() if self._method() == "DELETE" else []

    def get_permissions(self):
        return [IsAuthenticatedUser()] if self._method() == "DELETE" else [AllowAny()]

    def get_throttles(self):
        return [TokenAddressThrottle()] if self._method() == "POST" else super().get_throttles()

    @extend_schema(request=TokenInputSerializer, auth=[],
                   responses={200: TokenOutputSerializer, **errors(*BODY_ERRORS, auth=False)})
    def post(self, request):
        serializer = TokenInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        failures = AccountFailures(serializer.validated_data["username"])
        wait = failures.wait()
        if wait is not None:  # before the password is checked: a refusal says nothing about the guess
            raise Throttled(wait=wait, detail="Too many failed attempts for this account.")
        user = authenticate(request, **serializer.validated_data)
        if user is None or not user.is_active:
            failures.record()
            return Response(error_body("invalid_credentials", "Wrong username or password."),
                            status=status.HTTP_400_BAD_REQUEST)
        token = token_issue(user=user)
        return Response(TokenOutputSerializer({"token": token.key, "expires": token_expires(token)}).data)

    @extend_schema(request=None, responses={204: None, **errors()})
    def delete(self, request):
        token_revoke(user=request.user, **audit_context(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class HealthSerializer(serializers.Serializer):
    """HealthApi's answer, declared for the schema (the same shape with 200 and 503)."""

    success = serializers.BooleanField()
    status = serializers.ChoiceField(choices=["ok", "degraded", "down"])
    database = serializers.BooleanField()
    cache = serializers.BooleanField()
    models_loaded = serializers.BooleanField()


class HealthApi(APIView):
    """Liveness and readiness: database, cache, models. Open to anyone (load balancers).

    503 only when the database is unreachable: without it nothing can be served. A cache outage
    is reported (``"status": "degraded"``) with 200, because the node still answers correctly
    (the index version is then read from the database), and a load balancer must not take every
    node out of rotation for it."""

    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes: list = []

    @extend_schema(responses={
        200: OpenApiResponse(HealthSerializer, description="ok, or degraded (the cache is down)."),
        503: OpenApiResponse(HealthSerializer, description="down: the database is unreachable."),
    })
    def get(self, request):
        checks = {"database": _check_database(), "cache": _check_cache()}
        models_loaded = bool(loaded_pipelines())
        state = "ok" if all(checks.values()) else "degraded" if checks["database"] else "down"
        return Response(
            {"success": state != "down", "status": state, **checks, "models_loaded": models_loaded},
            status=status.HTTP_503_SERVICE_UNAVAILABLE if state == "down" else status.HTTP_200_OK,
        )


def _check_database() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception:  # noqa: BLE001 - reported, not raised
        return False


def _check_cache() -> bool:
    try:
        cache.set("health-probe", "ok", timeout=10)
        return cache.get("health-probe") == "ok"
    except Exception:  # noqa: BLE001
        return False


class StatsApi(APIView):
    permission_classes = [IsAuthenticatedUser]

    @extend_schema(responses={200: OpenApiTypes.OBJECT, **errors()})
    def get(self, request):
        index = index_cache.get()
        return Response({
            "success": True,
            "stages": metrics.snapshot(),
            # This process's lanes and engine queue: threads, waiting requests, batches, refusals.
            "serving": serving_snapshot(),
            # With how this process keeps it: the last change applied, rebuilds and their reasons.
            "index": {"faces": len(index), "people": index.person_count, **index_cache.status()},
        })
