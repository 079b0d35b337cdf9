"""One error shape everywhere: {"success": false, "error": {"code", "message", "details"?}}."""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied
from django.db import DatabaseError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from face_engine.types import ImageError

logger = logging.getLogger(__name__)


class ServiceError(exceptions.APIException):
    """A refusal from a service, with a stable code: raised by services, rendered by the handler."""

    def __init__(self, code: str, message: str, *, status_code: int = 400, details=None):
        super().__init__(detail=message, code=code)
        self.status_code = status_code
        self.error_code = code
        self.message = message
        self.details = details


def error_body(code: str, message: str, details=None) -> dict:
    error = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return {"success": False, "error": error}


def _first_message(detail) -> str:
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    if isinstance(detail, dict) and detail:
        key, value = next(iter(detail.items()))
        inner = _first_message(value)
        return inner if key == "non_field_errors" else f"{key}: {inner}"
    return str(detail)


def exception_handler(exc, context):
    if isinstance(exc, ServiceError):
        return Response(error_body(exc.error_code, exc.message, exc.details), status=exc.status_code)
    if isinstance(exc, ImageError):
        return Response(error_body(exc.code, exc.message), status=exc.status)
    if isinstance(exc, DatabaseError):
        logger.exception("database error")
        return Response(
            error_body("database_unavailable", "The database is unavailable; try again shortly."),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        body = error_body("invalid", _first_message(exc.detail), exc.detail)
    else:
        codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
        code = codes if isinstance(codes, str) else "error"
        body = error_body(code, _first_message(response.data.get("detail", response.data)))
    response.data = body
    return response


def json_404(request, exception=None):
    return JsonResponse(error_body("not_found", "No such resource."), status=404)


def json_400(request, exception=None):
    return JsonResponse(error_body("bad_request", str(exception) or "Bad request."), status=400)


def json_403(request, exception=None):
    return JsonResponse(error_body("permission_denied", "Permission denied."), status=403)


def json_500(request):
    return JsonResponse(error_body("server_error", "Internal server error."), status=500)
