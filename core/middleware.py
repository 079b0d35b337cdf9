"""One log line per request (a JSON line under LOG_FORMAT=json), under a request id the client may supply;
and the request counted in the Prometheus metrics. API errors in JSON whatever DEBUG is."""

from __future__ import annotations

import logging
import re
import time
import uuid

from django.core.exceptions import PermissionDenied, SuspiciousOperation
from django.core.signals import got_request_exception
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve

from core.errors import error_response, suspicious_refusal
from core.logging import request_id_var
from core.metrics import request_stage_timings
from core.parsers import text_problem
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


class ApiErrorMiddleware:
    """Every answer under /api/ is JSON in the error shape, whatever DEBUG is: Django's HTML pages
    (the technical 404 and 500 of DEBUG, a CSRF failure, a bare 405) are replaced, an exception a
    view lets through is logged with its traceback and answered as a JSON 500. Query parameters
    holding NUL are refused (PostgreSQL refuses NUL in text: a filter would fail in the database),
    on every path. Placed right after RequestLogMiddleware, so its answers are logged and counted."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        refusal = _query_refusal(request)
        if refusal is not None:
            return refusal
        if not _is_api(request):
            return self.get_response(request)
        missing_slash = _missing_slash(request)
        if missing_slash is not None:
            return missing_slash
        return _as_json_error(self.get_response(request))

    def process_exception(self, request, exception):
        if not _is_api(request):
            return None
        if isinstance(exception, Http404):
            return error_response(404)
        if isinstance(exception, PermissionDenied):
            return error_response(403)
        if isinstance(exception, SuspiciousOperation):
            status, code, message = suspicious_refusal(exception)
            logging.getLogger("django.security").warning("%s: %s", type(exception).__name__, message)
            return error_response(status, code, message)
        # As Django's own handler does (Sentry and the test client listen to this signal).
        got_request_exception.send(sender=type(self), request=request)
        logging.getLogger("django.request").error("Internal Server Error: %s", request.path, exc_info=exception)
        return error_response(500)


_KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate", "Connection")


def _is_api(request) -> bool:
    return request.path_info.startswith("/api/")


def _query_refusal(request):
    try:
        parameters = request.GET.lists()
    except SuspiciousOperation as exc:  # more than DATA_UPLOAD_MAX_NUMBER_FIELDS parameters
        return error_response(*suspicious_refusal(exc))
    problems = {}
    for name, values in parameters:
        for text in (name, *values):
            problem = text_problem(text)
            if problem is not None:
                problems[name[:100]] = [problem]
                break
    if not problems:
        return None
    first, messages = next(iter(problems.items()))
    return error_response(400, "invalid", f"{first!r}: {messages[0]}", problems)


def _missing_slash(request):
    """A POST to /api/people (no slash): Django's CommonMiddleware fails with a RuntimeError under
    DEBUG, and redirects it as a GET otherwise. Answered 404, naming the URL meant."""
    path = request.path_info
    if path.endswith("/") or request.method in ("GET", "HEAD"):
        return None
    try:
        resolve(path)
        return None
    except Resolver404:
        pass
    try:
        resolve(path + "/")
    except Resolver404:
        return None
    return error_response(404, "not_found", f"No such resource; API URLs end with a slash: {request.path}/")


def _as_json_error(response):
    if response.status_code < 400 or response.get("Content-Type", "").startswith("application/json"):
        return response
    data = getattr(response, "data", None)  # a DRF answer rendered for a browser: keep its content
    if isinstance(data, dict) and data.get("success") is False and isinstance(data.get("error"), dict):
        replacement = JsonResponse(data, status=response.status_code)
    else:
        replacement = error_response(response.status_code)
    for header in _KEPT_HEADERS:
        if header in response:
            replacement[header] = response[header]
    return replacement
