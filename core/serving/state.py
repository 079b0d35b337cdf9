"""What the serving parts share: the refusals they answer, the state of the request being served
(set by the lane that runs it), the process's registry of lanes and queues, and the helpers that
lower a thread's priority and give a thread's database connections back."""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
from contextvars import ContextVar
from typing import Any

from django.db import connections

from core.errors import ServiceError

logger = logging.getLogger("core.serving")


class Overloaded(ServiceError):
    """503 ``overloaded``: the request would wait too long for the engine (``max_wait``) or its
    queue is full (``queue_full``). ``retry_after``: whole seconds, at least 1, for the
    ``Retry-After`` header."""

    def __init__(self, reason: str, estimated_wait_ms: float, *, waiting: int = 0, limit: float = 0) -> None:
        wait_ms = max(0, int(math.ceil(estimated_wait_ms)))
        self.reason = reason
        self.retry_after = max(1, math.ceil(wait_ms / 1000))
        if reason == "queue_full":
            cause = f"{waiting} requests already wait for the face engine (the queue holds {int(limit)})"
        else:
            cause = f"the wait for the face engine would be about {wait_ms} ms (the limit is {int(limit)} ms)"
        super().__init__("overloaded", f"The service is overloaded: {cause}. Try again in {self.retry_after} s.",
                         status_code=503, details={"reason": reason, "estimated_wait_ms": wait_ms})


class ClientGone(ServiceError):
    """The client disconnected while its request waited for the engine: its images were never
    analysed. Logged as 499 (nobody reads the answer)."""

    def __init__(self) -> None:
        super().__init__("client_disconnected", "The client disconnected before its images were analysed.",
                         status_code=499)


# Set by the lane for the request its thread runs: the client's disconnection (an Event the handler
# sets), and the refusal raised during the request (its Retry-After goes on the answer).
request_abandoned: ContextVar[threading.Event | None] = ContextVar("request_abandoned", default=None)
request_refusal: ContextVar[Overloaded | None] = ContextVar("request_refusal", default=None)


def with_retry_after(response: Any) -> Any:
    """The answer of a request refused as overloaded inside its view gets the refusal's
    Retry-After (the error handler renders the body, in the error shape, without headers)."""
    refusal = request_refusal.get()
    if refusal is not None and response.status_code == 503 and "Retry-After" not in response:
        response["Retry-After"] = str(refusal.retry_after)
    return response


def release_connections() -> None:
    """Give this thread's database connections back (to the pool, on PostgreSQL) before a long
    wait, as the end of a request would: none is held idle while the engine works. A connection
    inside a transaction (an atomic block, autocommit off) is kept: closing it would end the
    transaction. The next query takes one again."""
    for connection in connections.all(initialized_only=True):
        if connection.connection is not None and not connection.in_atomic_block and connection.get_autocommit():
            connection.close()


_priority_warned = False


def lower_priority(increment: int) -> None:
    """Run the calling thread ``increment`` nice levels below the process's main thread (Linux
    nice values are per thread; threads it starts afterwards inherit it: a thread already that
    low, one started by a lowered thread, stays as it is). Elsewhere, or when refused, nothing
    changes."""
    global _priority_warned
    if increment <= 0 or sys.platform != "linux":
        return
    tid = threading.get_native_id()
    try:
        target = min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + increment)
        if os.getpriority(os.PRIO_PROCESS, tid) < target:
            os.setpriority(os.PRIO_PROCESS, tid, target)
    except OSError as exc:
        if not _priority_warned:
            _priority_warned = True
            logger.warning("the engine's threads keep their priority: %s", exc)


# The process's lanes and queues, for GET /api/stats/ (``snapshot``).
_registry: dict[str, dict[str, Any]] = {"lanes": {}, "queues": {}}
_registry_lock = threading.Lock()


def register(kind: str, name: str, item: Any) -> None:
    with _registry_lock:
        _registry[kind][name] = item


def snapshot() -> dict[str, Any]:
    """This process's serving state: each lane's threads and waiting requests, each queue's
    requests, batches, throughput, refusals and waits."""
    with _registry_lock:
        lanes, queues = dict(_registry["lanes"]), dict(_registry["queues"])
    return {
        "pid": os.getpid(),
        "lanes": {name: lane.snapshot() for name, lane in sorted(lanes.items())},
        "queues": {name: queue.snapshot() for name, queue in sorted(queues.items())},
    }
