"""One log line per request (a JSON line under LOG_FORMAT=json), under a request id the client may supply;
and the request counted in the Prometheus metrics."""

from __future__ import annotations

import logging
import re
import time
import uuid

from django.http import HttpRequest, HttpResponse

from core.logging import request_id_var
from core.metrics import request_stage_timings
from core.prometheus import HTTP_REQUESTS, HTTP_SECONDS

logger = logging.getLogger("core.request")
REQUEST_ID_HEADER = "X-Request-ID"
# An incoming id is kept only when it cannot forge or break a log line or a header.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
# Metric labels must stay few: any other method a client invents is counted as "other".
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def incoming_request_id(request: HttpRequest) -> str | None:
    value = request.headers.get(REQUEST_ID_HEADER, "")
    return value if _SANE_REQUEST_ID.fullmatch(value) else None


class RequestLogMiddleware:
    """Sets `request.request_id` (returned in X-Request-ID) and `request.stage_timings` (the engine's
    stages, summed by core.metrics as they are recorded), then logs who asked what, the outcome,
    the duration and the stages, and counts the request in the Prometheus metrics (/metrics too)."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        start = time.perf_counter()
        request_id = incoming_request_id(request) or uuid.uuid4().hex
        stages: dict[str, float] = {}
        request.request_id, request.stage_timings = request_id, stages
        token = request_id_var.set(request_id)
        try:
            with request_stage_timings(stages):
                response = self.get_response(request)
            response[REQUEST_ID_HEADER] = request_id
            seconds = time.perf_counter() - start
            _log(request, response, seconds * 1000.0)
            _count(request, response, seconds)
            return response
        finally:
            request_id_var.reset(token)


def _log(request, response: HttpResponse, duration_ms: float) -> None:
    user = getattr(request, "user", None)
    match = request.resolver_match
    fields = {
        "request_id": request.request_id,
        "user": user.get_username() if user is not None and user.is_authenticated else None,
        "method": request.method,
        "path": request.path,
        "endpoint": match.route if match else None,
        "status": response.status_code,
        "duration_ms": round(duration_ms, 3),
    }
    if request.stage_timings:
        fields["stages_ms"] = {name: round(ms, 3) for name, ms in request.stage_timings.items()}
    level = logging.ERROR if response.status_code >= 500 else logging.INFO
    logger.log(level, "%s %s %s %.1fms", request.method, request.path, response.status_code, duration_ms,
               extra=fields)


def _count(request, response: HttpResponse, seconds: float) -> None:
    """By the URL route, never the raw path: one series per endpoint, whatever ids clients send."""
    match = request.resolver_match
    endpoint = (match.route or "/") if match else "unmatched"
    method = request.method if request.method in _METHODS else "other"
    HTTP_REQUESTS.labels(endpoint=endpoint, method=method, status=str(response.status_code)).inc()
    HTTP_SECONDS.labels(endpoint=endpoint).observe(seconds)
