"""gunicorn settings for `make serve`, from the environment (see README's configuration table)."""

import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

# Prometheus: each worker writes its metrics to files in this folder and /metrics sums them all.
# Set here, in the master, before any process imports prometheus_client (the workers inherit it).
# Default: a folder of this master's own, so neither a previous run nor another server on the
# machine is summed in; a folder the operator names is emptied when the master starts.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="facerec-prometheus-")
    os.environ["FACEREC_PROMETHEUS_TEMP_DIR"] = os.environ["PROMETHEUS_MULTIPROC_DIR"]  # removed on exit

# ASGI under uvicorn's worker class: plain HTTP and the live WebSockets on the same port. Each
# process runs its views on two bounded pools of threads, a light one (SERVING_LIGHT_THREADS) and
# one for the views that run the face engine (SERVING_ENGINE_THREADS), whose images one engine
# call per batch analyses, behind a bounded queue (RECOGNITION_*: 503 overloaded past it);
# config/asgi.py and docs/operations.md ("How a process serves") say why. Uploads and answers
# stream without holding a thread. Size `workers` to the cores: each process's engine uses them all.
wsgi_app = "config.asgi:application"
worker_class = "uvicorn_worker.UvicornWorker"
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Timeouts (docs/operations.md states them all). A worker that stops answering gunicorn's heartbeat
# for `timeout` seconds is killed and replaced (its event loop is stuck: the views run on the lanes'
# threads, so a long recognition no longer holds the loop); on a restart workers get `graceful_timeout` seconds to
# finish their requests; an idle kept-alive connection is closed after `keepalive` seconds (passed
# to uvicorn as its --timeout-keep-alive). A request body must arrive within REQUEST_BODY_TIMEOUT
# (config/asgi.py), whatever the worker.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = 5
# The request line and headers. These bind gunicorn's own HTTP parser (its sync and gthread
# workers); uvicorn's workers parse HTTP themselves, and config/asgi.py applies the same numbers to
# what they hand over (414 past the line, 431 past the header count or a header's size).
limit_request_line = int(os.environ.get("REQUEST_MAX_LINE_BYTES", "8190"))
limit_request_fields = int(os.environ.get("REQUEST_MAX_HEADERS", "100"))
limit_request_field_size = int(os.environ.get("REQUEST_MAX_HEADER_BYTES", "8190"))
# Each worker imports Django and loads the face models itself, lazily, after the fork: the
# runtimes' thread pools and the database pool's connections do not survive a fork.
preload_app = False
# core.middleware logs every request (with its id, user and timings); gunicorn's would repeat it.
accesslog = None

if os.environ.get("LOG_FORMAT", "json") == "json":
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "core.logging.JsonFormatter"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
        "root": {"handlers": ["console"], "level": "INFO"},
        "loggers": {"gunicorn.error": {"level": "INFO", "propagate": True}},
    }


def on_starting(server):
    """A bad variable stops the master with its message, before any worker boots and fails."""
    from config.env import settings_or_exit

    settings_or_exit()
    metrics_dir = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    metrics_dir.mkdir(parents=True, exist_ok=True)
    for stale in metrics_dir.glob("*.db"):  # a previous run's processes: never summed in
        stale.unlink()


def child_exit(server, worker):
    """A worker's live gauges (facerec_mqtt_connected) leave with it; its counters stay summed."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    temp = os.environ.get("FACEREC_PROMETHEUS_TEMP_DIR")
    if temp and temp == os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shutil.rmtree(temp, ignore_errors=True)
