"""Prometheus /metrics: who may scrape, what the database says at scrape time, and the exposition
(the Django view, and a small HTTP server for camera workers, which serve no HTTP otherwise).

Access: `Authorization: Bearer <METRICS_TOKEN>`, or a client address (REMOTE_ADDR, never
X-Forwarded-For: a client could write anything there) in METRICS_ALLOWED_NETWORKS."""

from __future__ import annotations

import functools
import hmac
import ipaddress
import json
import logging
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from django.conf import settings
from django.db import DatabaseError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from core.errors import error_body
from core.prometheus import process_registry

logger = logging.getLogger(__name__)

_REFUSED = {
    401: ("authentication_failed", "Wrong metrics token."),
    403: ("permission_denied", "Metrics are served with Authorization: Bearer <METRICS_TOKEN>, or to an "
                               "address in METRICS_ALLOWED_NETWORKS."),
}


# ---- access ---------------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def _networks(cidrs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            logger.error("METRICS_ALLOWED_NETWORKS: %r is not a network (CIDR); ignored", cidr)
    return tuple(networks)


def _address_allowed(remote_addr: str) -> bool:
    try:
        address = ipaddress.ip_address(remote_addr)
    except ValueError:  # empty (a Unix socket) or not an address
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 on a dual-stack socket
    return any(address in network for network in _networks(tuple(settings.METRICS_ALLOWED_NETWORKS)))


def metrics_access(remote_addr: str, authorization: str) -> int:
    """200 (may scrape), 401 (a credential was sent and it is wrong) or 403 (none, from elsewhere)."""
    scheme, _, token = authorization.strip().partition(" ")
    expected = settings.METRICS_TOKEN
    if expected and scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected.encode()):
        return 200
    if _address_allowed(remote_addr):
        return 200
    return 401 if authorization.strip() else 403


# ---- values read from the database at scrape time ----------------------------------------------

_READERS: list = []


def register_scrape_reader(read) -> None:
    """``read()`` returns metric families read from the database at scrape time; the apps that own
    the rows register theirs when Django starts (core imports none of them)."""
    if read not in _READERS:
        _READERS.append(read)


def counted_by(name: str, documentation: str, label: str, rows, states: list[str]) -> GaugeMetricFamily:
    counts = dict(rows)
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for state in states:  # every state, 0 included: a series that vanishes reads as "no data"
        family.add_metric([state], counts.get(state, 0))
    return family


class DatabaseCollector:
    """Values read from the database on each scrape: the same on every process and host, and
    right whichever process changed them. A read that fails leaves its gauges out, is counted in
    facerec_scrape_errors and logged; the scrape itself still answers."""

    def collect(self):
        errors = 0
        for read in list(_READERS):
            try:
                with transaction.atomic():  # a savepoint: one failed read leaves the others working
                    families = read()
            except DatabaseError as exc:
                errors += 1
                logger.warning("metrics: %s not read: %s", read.__name__.strip("_"),
                               (str(exc).splitlines() or [exc.__class__.__name__])[0])
                continue
            except Exception:  # noqa: BLE001 - a scrape must answer
                errors += 1
                logger.exception("metrics: %s not read", read.__name__.strip("_"))
                continue
            yield from families
        yield GaugeMetricFamily("facerec_scrape_errors", "Database reads that failed during this scrape "
                                "(their gauges are left out).", value=errors)


def exposition() -> bytes:
    """This process's metrics (every process's under multiprocess mode), then the database's."""
    database = CollectorRegistry(auto_describe=False)
    database.register(DatabaseCollector())
    return generate_latest(process_registry()) + generate_latest(database)


def _refusal(status: int) -> JsonResponse:
    response = JsonResponse(error_body(*_REFUSED[status]), status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


def metrics_view(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        response = JsonResponse(error_body("method_not_allowed", f'Method "{request.method}" not allowed.'),
                                status=405)
        response["Allow"] = "GET, HEAD"
        return response
    status = metrics_access(request.META.get("REMOTE_ADDR", ""), request.headers.get("Authorization", ""))
    if status != 200:
        return _refusal(status)
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)


# ---- camera workers: their own port ------------------------------------------------------------

class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - one line per scrape is noise
        pass


def _metrics_app(environ, start_response):
    if environ.get("PATH_INFO", "/") not in ("/", "/metrics"):
        status, body, content_type = 404, json.dumps(error_body("not_found", "No such resource.")).encode(), \
            "application/json"
    else:
        status = metrics_access(environ.get("REMOTE_ADDR", ""), environ.get("HTTP_AUTHORIZATION", ""))
        if status == 200:
            body, content_type = generate_latest(process_registry()), CONTENT_TYPE_LATEST
        else:
            body, content_type = json.dumps(error_body(*_REFUSED[status])).encode(), "application/json"
    headers = [("Content-Type", content_type)]
    if status == 401:
        headers.append(("WWW-Authenticate", 'Bearer realm="metrics"'))
    reasons = {200: "OK", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}
    start_response(f"{status} {reasons[status]}", headers)
    return [body]


def serve_metrics(*, port: int, address: str = "0.0.0.0") -> WSGIServer:
    """Serve this process's metrics on http://address:port/metrics (same access rules as the
    server's /metrics; no database gauges: the API server reports those once) from a daemon
    thread; `shutdown()` stops it."""
    server = make_server(address, port, _metrics_app, server_class=_Server, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
