"""One POST to a receiver, pinned to the addresses the SSRF check accepted and bounded in total
time. The standard library's http.client: it never follows redirects (a 3xx is a failure) and
lets the connection be made to a chosen address while the Host header and TLS (server name and
certificate) use the URL's host name."""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass

from webhooks.ssrf import Target

ERROR_BODY_CHARS = 200  # of a refusing receiver's answer, kept in the delivery's log


@dataclass(frozen=True)
class Response:
    status_code: int | None  # None: no answer (refused, timed out, TLS…)
    error: str  # "" when the receiver answered 2xx
    latency_ms: float

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class _Deadline:
    """Shuts the connection's socket when the time is up, whatever the receiver is doing (silent,
    or trickling one byte at a time, which a per-read socket timeout alone would let go on)."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds
        self.expired = False
        self.connection: http.client.HTTPConnection | None = None
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def remaining(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            self.expired = True
            raise TimeoutError("timed out")
        return left

    def _expire(self) -> None:
        self.expired = True
        sock = self.connection.sock if self.connection is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()


def _pinned(connection: http.client.HTTPConnection, addresses: tuple[str, ...], deadline: _Deadline) -> None:
    """Connect to the checked addresses in turn instead of resolving the host name again."""

    def create_connection(_address, _timeout=None, source_address=None):
        error: OSError | None = None
        for address in addresses:
            try:
                return socket.create_connection((address, connection.port), deadline.remaining(), source_address)
            except TimeoutError:
                raise
            except OSError as exc:
                error = exc
        raise error or OSError("no address to connect to")

    connection._create_connection = create_connection  # type: ignore[attr-defined]


def _describe(exc: BaseException, timeout: float, deadline: _Deadline) -> str:
    if deadline.expired or isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc}"
    return f"{type(exc).__name__}: {exc}"[:500]


def post(target: Target, body: bytes, headers: dict[str, str], *, timeout: float) -> Response:
    """POST ``body``; at most ``timeout`` seconds from the first connection to the last byte read."""
    started = time.monotonic()
    deadline = _Deadline(timeout)
    if target.scheme == "https":
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            target.host, target.port, timeout=timeout, context=ssl.create_default_context())
    else:
        connection = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
    _pinned(connection, target.addresses, deadline)
    deadline.connection = connection
    try:
        with deadline:
            connection.request("POST", target.path, body=body, headers={**headers, "Connection": "close"})
            answer = connection.getresponse()
            text = answer.read(ERROR_BODY_CHARS * 4)
        status = answer.status
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return Response(None, _describe(exc, timeout, deadline), (time.monotonic() - started) * 1000.0)
    finally:
        connection.close()
    latency_ms = (time.monotonic() - started) * 1000.0
    if 200 <= status < 300:
        return Response(status, "", latency_ms)
    snippet = text.decode("utf-8", "replace")[:ERROR_BODY_CHARS].strip()
    reason = "redirects are not followed" if 300 <= status < 400 else snippet
    return Response(status, f"HTTP {status}" + (f": {reason}" if reason else ""), latency_ms)
