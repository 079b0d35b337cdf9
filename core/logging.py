"""Log records as JSON lines (LOG_FORMAT=json), each tagged with the id of the request it belongs to.

Standard library only: gunicorn's master process uses it too, before Django is set up.
"""

from __future__ import annotations

import json
import logging
import logging.config
from contextvars import ContextVar
from datetime import UTC, datetime

# Set by core.middleware.RequestLogMiddleware for the duration of a request.
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

# Attributes every LogRecord has; any other one was passed with `extra=` and goes into the line.
_RECORD_ATTRIBUTES = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def configure(config: dict) -> None:
    """Django's LOGGING_CONFIG: LOGGING, and Python's warnings (a library's, the worker's) as log
    records too, so that nothing reaches stderr other than in the configured format."""
    logging.config.dictConfig(config)
    logging.captureWarnings(True)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        # Django logs a 4xx after the middleware has returned, but passes the request along.
        request_id = request_id_var.get() or getattr(getattr(record, "request", None), "request_id", None)
        if request_id is not None:
            line["request_id"] = request_id
        line.update((key, value) for key, value in vars(record).items() if key not in _RECORD_ATTRIBUTES)
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        # Objects passed in `extra` (Django's django.request passes the request) are logged as str().
        return json.dumps(line, default=str)
