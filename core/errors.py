"""One error shape everywhere: {"success": false, "error": {"code", "message", "details"?}}."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import (
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.db import DatabaseError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from face_engine.types import ImageError

logger = logging.getLogger(__name__)
security_logger = logging.getLogger("django.security")

# The code of an answer nothing more specific names, by status (an unmatched /api/ URL, a page
# Django rendered, a refusal made before any view ran). Every code is listed in docs/api.md.
STATUS_CODES = {
    400: ("invalid", "Bad request."),
    401: ("not_authenticated", "Authentication credentials were not provided."),
    403: ("permission_denied", "Permission denied."),
    404: ("not_found", "No such resource."),
    405: ("method_not_allowed", "Method not allowed."),
    406: ("not_acceptable", "No acceptable representation: this API answers JSON."),
    408: ("request_timeout", "The request body was not received in time."),
    413: ("request_too_large", "The request body is too large."),
    415: ("unsupported_media_type", "Unsupported media type."),
    429: ("throttled", "Too many requests."),
}


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


def suspicious_refusal(exc: SuspiciousOperation) -> tuple[int, str, str]:
    """(status, code, message) for what Django's request parsing refuses: a body over
    DATA_UPLOAD_MAX_MEMORY_SIZE, too many form fields or files, a bad Host…"""
    if isinstance(exc, RequestDataTooBig):
        return 413, "request_too_large", (f"The request's form data is over {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} "
                                          "bytes (DATA_UPLOAD_MAX_MEMORY_SIZE).")
    if isinstance(exc, TooManyFieldsSent):
        return 400, "parse_error", (f"The request has more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} fields "
                                    "(DATA_UPLOAD_MAX_NUMBER_FIELDS).")
    if isinstance(exc, TooManyFilesSent):
        return 400, "parse_error", (f"The request has more than {settings.DATA_UPLOAD_MAX_NUMBER_FILES} files "
                                    "(DATA_UPLOAD_MAX_NUMBER_FILES).")
    return 400, "invalid", str(exc)[:200] or "Bad request."


def exception_handler(exc, context):
    if isinstance(exc, SuspiciousOperation):  # raised by Django's parsing of request.data
        status_code, code, message = suspicious_refusal(exc)
        security_logger.warning("%s: %s", type(exc).__name__, message)
        return Response(error_body(code, message), status=status_code)
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


def error_response(status_code: int, code: str | None = None, message: str | None = None,
                   details=None) -> JsonResponse:
    """A JSON answer in the error shape, with the code STATUS_CODES gives ``status_code`` by default."""
    default_code, default_message = STATUS_CODES.get(
        status_code, ("server_error", "Internal server error.") if status_code >= 500 else ("invalid", "Bad request."))
    return JsonResponse(error_body(code or default_code, message or default_message, details), status=status_code)


def json_404(request, exception=None):
    return error_response(404)


def json_400(request, exception=None):
    if isinstance(exception, SuspiciousOperation):
        return error_response(*suspicious_refusal(exception))
    return error_response(400)


def json_403(request, exception=None):
    return error_response(403)


def json_500(request):
    return error_response(500)
