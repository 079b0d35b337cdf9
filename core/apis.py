from __future__ import annotations

from django.contrib.auth import authenticate
from django.core.cache import cache
from django.db import connection
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import error_body
from core.metrics import metrics
from core.permissions import IsAuthenticatedUser
from face_engine.registry import loaded_pipelines
from recognition.index_cache import index_cache


class TokenInputSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)


class TokenApi(APIView):
    """Exchange a username and password for the user's API token."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(request=TokenInputSerializer, responses=dict)
    def post(self, request):
        serializer = TokenInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = authenticate(request, **serializer.validated_data)
        if user is None or not user.is_active:
            return Response(error_body("invalid_credentials", "Wrong username or password."),
                            status=status.HTTP_400_BAD_REQUEST)
        token, _ = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})


class HealthApi(APIView):
    """Liveness and readiness: database, cache, models. Open to anyone (load balancers).

    503 only when the database is unreachable: without it nothing can be served. A cache outage
    is reported (``"status": "degraded"``) with 200, because the node still answers correctly
    (the index version is then read from the database), and a load balancer must not take every
    node out of rotation for it."""

    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes: list = []

    @extend_schema(responses=dict)
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

    @extend_schema(responses=dict)
    def get(self, request):
        index = index_cache.get()
        return Response({
            "success": True,
            "stages": metrics.snapshot(),
            "index": {"faces": len(index), "people": index.person_count},
        })
