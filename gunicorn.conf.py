"""gunicorn settings for `make serve`, from the environment (see README's configuration table)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

# ASGI under uvicorn's worker class: plain HTTP and the live WebSockets on the same port. Each
# process runs one Django view at a time (config/asgi.py says why); uploads and answers stream
# without holding it.
wsgi_app = "config.asgi:application"
worker_class = "uvicorn_worker.UvicornWorker"
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Recognising a batch of large images on a CPU can take a while.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = 5
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
