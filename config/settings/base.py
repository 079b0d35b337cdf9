"""Development defaults that just work: SQLite, in-process cache and jobs, DEBUG on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from config.env import (
    BASE_DIR,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_str,
    postgres_from_url,
    redacted,
    sqlite_path_from_url,
)
from face_engine.settings import EngineSettings

DEV_SECRET_KEY = "dev-insecure-key-change-me-in-production"  # refused by config.settings.production
SECRET_KEY = env_str("SECRET_KEY", DEV_SECRET_KEY)
DEBUG = env_bool("DEBUG", True)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver")

VAR_DIR = BASE_DIR / "var"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "core",
    "people",
    "recognition",
    "jobs",
    "core.audit",  # label "audit": the trail every write records into
    "channels",
    "streams",
    "events",
    "webhooks",
    "attendance",
    "unknowns",
    "privacy",
    "corrections",
]

MIDDLEWARE = [
    "core.middleware.RequestLogMiddleware",  # first: it times and logs everything below, redirects included
    "core.middleware.ApiErrorMiddleware",  # /api/ answers JSON errors whatever DEBUG is; NUL in queries refused
    "django.middleware.security.SecurityMiddleware",
    "core.security.SecurityHeadersMiddleware",  # CSP and Permissions-Policy on the HTML pages
    # Static files (the admin's, the Swagger UI's, the live page's) from the ASGI server itself:
    # from the apps' folders in development, from STATIC_ROOT (collectstatic) in production.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASE_URL = env_str("DATABASE_URL")
SQLITE_PATH = env_str("SQLITE_PATH", str(VAR_DIR / "db.sqlite3"))


def _sqlite(path: str) -> dict[str, Any]:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": path,
        "OPTIONS": {
            # Writers from request threads and the in-process job pool wait instead of failing.
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }


def _postgres(url: str) -> dict[str, Any]:
    database = postgres_from_url(url)
    # Django's own pool (psycopg_pool) replaces persistent connections, so CONN_MAX_AGE must be 0;
    # with CONN_HEALTH_CHECKS the pool checks a connection before handing it out.
    database.update(ENGINE="django.db.backends.postgresql", CONN_MAX_AGE=0, CONN_HEALTH_CHECKS=True)
    # A database outage fails a request within seconds instead of hanging it.
    database["OPTIONS"].setdefault("connect_timeout", env_int("DB_CONNECT_TIMEOUT", 3))
    database["OPTIONS"]["pool"] = {
        "min_size": env_int("DB_POOL_MIN", 1),
        "max_size": env_int("DB_POOL_MAX", 4),  # a request thread and the job threads of one process
        "timeout": env_float("DB_POOL_TIMEOUT", 5.0),  # seconds to wait for a free connection
    }
    return database


def _database(url: str) -> dict[str, Any]:
    if not url:
        return _sqlite(SQLITE_PATH)
    scheme = url.partition("://")[0]
    if scheme == "sqlite":
        return _sqlite(sqlite_path_from_url(url))
    if scheme in ("postgres", "postgresql"):
        return _postgres(url)
    raise ImproperlyConfigured(f"DATABASE_URL must start with postgres://, postgresql:// or sqlite://, "
                               f"got {redacted(url)!r}")


DATABASES = {"default": _database(DATABASE_URL)}

REDIS_URL = env_str("REDIS_URL")
CACHE_URL = env_str("CACHE_URL") or REDIS_URL or "locmem://"


def _cache_from_url(url: str) -> dict[str, Any]:
    if url.startswith("locmem://"):
        return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "facerec"}
    if url.startswith("file://"):
        return {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                "LOCATION": url.removeprefix("file://")}
    if url.startswith(("redis://", "rediss://")):
        # Short timeouts: a Redis outage costs a request under a second, and its errors are raised
        # (IGNORE_EXCEPTIONS is off) so the index version falls back to the database.
        return {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": url,
                "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 1.0}}
    raise ImproperlyConfigured(f"CACHE_URL must start with locmem://, file:// or redis://, got {redacted(url)!r}")


CACHES = {"default": _cache_from_url(CACHE_URL)}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

LOGIN_URL = "login"  # the /live/ page's sign-in (streams/templates/registration/login.html)
LOGIN_REDIRECT_URL = "live"
STATIC_URL = "static/"
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
STATIC_ROOT = env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles"))
MEDIA_URL = "media/"
MEDIA_ROOT = env_str("MEDIA_ROOT", str(VAR_DIR / "media"))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Engine settings (FACE_* and MAX_* variables) are read by the engine itself.
FACE_ENGINE = EngineSettings.from_env()
# Django must accept a body a little larger than the largest image we accept.
DATA_UPLOAD_MAX_MEMORY_SIZE = FACE_ENGINE.max_upload_bytes + 1024 * 1024
MAX_BATCH_IMAGES = env_int("MAX_BATCH_IMAGES", 32)
DATA_UPLOAD_MAX_NUMBER_FILES = max(100, MAX_BATCH_IMAGES + 1)

# What one HTTP request may send (docs: README's configuration table and docs/operations.md).
# The whole body, counted as it arrives by config/asgi.py (413 before it is all read; a Content-Length
# over it is answered at once): a full batch of the largest images, and a little more.
REQUEST_MAX_BODY_BYTES = env_int("REQUEST_MAX_BODY_BYTES",
                                 MAX_BATCH_IMAGES * FACE_ENGINE.max_upload_bytes + 1024 * 1024)
# Seconds a request's body may take to arrive, in all (a client trickling it byte by byte gets a
# 408 and the connection is closed, instead of holding it and its buffer forever).
REQUEST_BODY_TIMEOUT = env_float("REQUEST_BODY_TIMEOUT", 60.0)
# The request line and headers: gunicorn.conf.py gives gunicorn's parser the same numbers; uvicorn
# (make run, and gunicorn's uvicorn workers) takes megabytes of headers, so config/asgi.py refuses
# past these with 414 and 431 before Django sees them.
REQUEST_MAX_LINE_BYTES = env_int("REQUEST_MAX_LINE_BYTES", 8190)
REQUEST_MAX_HEADERS = env_int("REQUEST_MAX_HEADERS", 100)
REQUEST_MAX_HEADER_BYTES = env_int("REQUEST_MAX_HEADER_BYTES", 8190)
# JSON bodies (core/parsers.py): the API's are small; past these, 413 and 400.
MAX_JSON_BODY_BYTES = env_int("MAX_JSON_BODY_BYTES", 1024 * 1024)
MAX_JSON_DEPTH = env_int("MAX_JSON_DEPTH", 32)
# Form fields (query parameters, multipart parts that are not files; the admin's inline forms send
# hundreds): Django refuses more with a 400, as it refuses files past DATA_UPLOAD_MAX_NUMBER_FILES.
DATA_UPLOAD_MAX_NUMBER_FIELDS = env_int("DATA_UPLOAD_MAX_NUMBER_FIELDS", 1000)

# ---- Serving: how one process runs its views (config/asgi.py, core/serving/; docs/operations.md,
# "How a process serves"; the defaults were measured by loadtest/serving_bench.py, docs/performance.md) ----
# Two lanes of threads per process: the light lane for every view that does not run the face
# engine on the request path (CRUD, auth, health, jobs, events, the admin), the engine lane for the
# views that do (recognise, batch, verify, synchronous enrolment, corrections' and unknowns'
# enrolments, gallery import). A busy thread holds at most one database connection, and an engine
# view gives its own back while it waits for the engine, so DB_POOL_MAX needs no room for those.
SERVING_LIGHT_THREADS = env_int("SERVING_LIGHT_THREADS", 4)
SERVING_ENGINE_THREADS = env_int("SERVING_ENGINE_THREADS", 0)  # 0: twice the engine's batch, at least 8
# How much lower the engine's threads run (a nice increment, Linux; 0: as the rest): the light lane
# and the event loop keep the CPU while recognitions saturate it (create person p50 36 ms against
# 84 ms at 0, with 50 clients recognising on 2 cores).
SERVING_ENGINE_NICE = env_int("SERVING_ENGINE_NICE", 10)
# The engine's queue (people/engine.py, core/serving/batcher.py): the images of concurrent requests
# go into one engine call of at most RECOGNITION_BATCH_MAX_IMAGES images (0: the engine's batch on a
# GPU, two per core on the CPU; a request with more runs alone), which waits at most
# RECOGNITION_BATCH_WAIT_MS after its first request for more. A request that would wait longer than
# RECOGNITION_MAX_WAIT_MS for its batch to start (estimated from the images ahead of it and the
# recent batches' throughput), or that finds RECOGNITION_QUEUE_MAX requests already waiting, is
# answered 503 overloaded at once, with Retry-After; one whose wait passes the limit all the same
# is answered so then. RECOGNITION_QUEUE_MAX is a backstop: on a CPU the wait binds long before it.
RECOGNITION_BATCH_MAX_IMAGES = env_int("RECOGNITION_BATCH_MAX_IMAGES", 0)
RECOGNITION_BATCH_WAIT_MS = env_float("RECOGNITION_BATCH_WAIT_MS", 5.0)
RECOGNITION_MAX_WAIT_MS = env_float("RECOGNITION_MAX_WAIT_MS", 1000.0)
RECOGNITION_QUEUE_MAX = env_int("RECOGNITION_QUEUE_MAX", 64)
for _name in ("SERVING_LIGHT_THREADS", "RECOGNITION_QUEUE_MAX"):
    if globals()[_name] < 1:
        raise ImproperlyConfigured(f"{_name} must be 1 or more, got {globals()[_name]}")
for _name in ("SERVING_ENGINE_THREADS", "RECOGNITION_BATCH_MAX_IMAGES"):
    if globals()[_name] < 0:
        raise ImproperlyConfigured(f"{_name} must be 0 (automatic) or more, got {globals()[_name]}")
if not 0 <= SERVING_ENGINE_NICE <= 19:
    raise ImproperlyConfigured(f"SERVING_ENGINE_NICE must be 0 to 19, got {SERVING_ENGINE_NICE}")
if RECOGNITION_BATCH_WAIT_MS < 0 or RECOGNITION_MAX_WAIT_MS <= 0:
    raise ImproperlyConfigured("RECOGNITION_BATCH_WAIT_MS must be 0 or more and RECOGNITION_MAX_WAIT_MS more than 0")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "core.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["core.permissions.IsStaffOrReadOnly"],
    "DEFAULT_PARSER_CLASSES": [
        "core.parsers.JSONParser",  # bounded depth and size; no NUL, lone surrogates or repeated keys
        "rest_framework.parsers.MultiPartParser",
        "rest_framework.parsers.FormParser",
    ],
    "DEFAULT_RENDERER_CLASSES": [
        "core.parsers.JSONRenderer",  # rows stored before input was checked still render
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PAGINATION_CLASS": "core.pagination.PageNumberPagination",
    "PAGE_SIZE": env_int("API_PAGE_SIZE", 50),
    "DEFAULT_THROTTLE_CLASSES": [
        "core.throttling.AnonRateThrottle",
        "core.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env_str("THROTTLE_ANON", "30/minute"),
        "user": env_str("THROTTLE_USER", "6000/minute"),
    },
    "EXCEPTION_HANDLER": "core.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Face recognition service",
    "DESCRIPTION": "Enrol people with a few photos; recognise every face in images.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# Each process checks the database's index version at least this often, besides the shared cache's
# token: a write whose announcement the cache missed (an outage) is seen everywhere within it.
INDEX_DB_CHECK_SECONDS = env_int("INDEX_DB_CHECK_SECONDS", 5)
# The index change log (core.index): changes carrying embeddings are kept this long, removals and
# gallery changes far longer (a process behind the first rebuilds in the background while applying
# removals; behind the second it refuses recognition until rebuilt). Compacted hourly.
INDEX_LOG_RETENTION_HOURS = env_int("INDEX_LOG_RETENTION_HOURS", 24)
INDEX_LOG_REMOVALS_RETENTION_DAYS = env_int("INDEX_LOG_REMOVALS_RETENTION_DAYS", 30)
# One index per machine (core/index/shared.py): a folder where the processes of this machine write
# the index once and memory-map it. Empty: each process builds its own (development's default;
# production's is var/index).
FACE_INDEX_SHARED_DIR = env_str("FACE_INDEX_SHARED_DIR", "")

# Live recognition (streams/, events/): WebSocket streams and camera workers.
# The channel layer carries messages between ASGI processes: Redis when there is one.
CHANNEL_LAYERS = {"default": (
    {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}} if REDIS_URL
    else {"BACKEND": "channels.layers.InMemoryChannelLayer"}
)}
# file:// camera sources must lie under this folder (video files played as a live camera would be).
CAMERA_FILE_ROOT = env_str("CAMERA_FILE_ROOT", str(VAR_DIR / "videos"))
# A camera worker's lease on a camera lasts this long; it renews it every third of it.
CAMERA_LEASE_SECONDS = env_float("CAMERA_LEASE_SECONDS", 15.0)
# Most cameras one worker runs at once (the rest are left to other workers).
CAMERA_WORKER_CAPACITY = env_int("CAMERA_WORKER_CAPACITY", 8)
# Seconds to open a source; seconds without a frame before the watchdog reconnects; the cap of the
# reconnection backoff (small: a refused connection costs nothing, and a camera that comes back
# must be read again within seconds).
CAMERA_OPEN_TIMEOUT = env_float("CAMERA_OPEN_TIMEOUT", 10.0)
CAMERA_READ_TIMEOUT = env_float("CAMERA_READ_TIMEOUT", 5.0)
CAMERA_RECONNECT_MAX_SECONDS = env_float("CAMERA_RECONNECT_MAX_SECONDS", 4.0)
# Event crops are deleted after this many days by a periodic job (0: kept).
EVENT_RETENTION_DAYS = env_int("EVENT_RETENTION_DAYS", 30)
# WebSocket streams: the largest frame accepted (bytes) and the frames waiting per connection.
LIVE_MAX_FRAME_BYTES = env_int("LIVE_MAX_FRAME_BYTES", 4 * 1024 * 1024)
LIVE_QUEUE_FRAMES = env_int("LIVE_QUEUE_FRAMES", 1)
# Seconds one message to a WebSocket client may wait for the client to read it; a client that does
# not read is disconnected (close code 4408) instead of the server buffering its results.
LIVE_SEND_TIMEOUT = env_float("LIVE_SEND_TIMEOUT", 10.0)

# What live recognition feeds (events/, webhooks/, attendance/, core/prometheus.py).
# MQTT: events to `<prefix>/events`, the last name seen per camera (retained) to
# `<prefix>/cameras/<name>/person`. Off while MQTT_HOST is empty.
MQTT_HOST = env_str("MQTT_HOST")
MQTT_PORT = env_int("MQTT_PORT", 1883)
MQTT_USERNAME = env_str("MQTT_USERNAME")
MQTT_PASSWORD = env_str("MQTT_PASSWORD")
MQTT_TLS = env_bool("MQTT_TLS", False)
MQTT_TLS_CA = env_str("MQTT_TLS_CA")  # a CA bundle's path; empty: the system's
MQTT_TOPIC_PREFIX = env_str("MQTT_TOPIC_PREFIX", "facerec").strip("/")
MQTT_QOS = env_int("MQTT_QOS", 1)
MQTT_CLIENT_ID = env_str("MQTT_CLIENT_ID")  # a prefix: <it>-<pid>; empty: facerec-<host>-<pid>
# Messages kept while the broker is away (the oldest are dropped past it, and counted).
MQTT_QUEUE_MAX = env_int("MQTT_QUEUE_MAX", 10000)
# Webhooks: a receiver gets WEBHOOK_TIMEOUT_SECONDS per attempt, and up to WEBHOOK_MAX_ATTEMPTS
# attempts, WEBHOOK_BACKOFF_SECONDS × 2^n apart (capped at WEBHOOK_BACKOFF_MAX_SECONDS).
# URLs resolving to private, loopback or link-local addresses are refused unless
# WEBHOOK_ALLOW_PRIVATE is true (server-side request forgery).
WEBHOOK_ALLOW_PRIVATE = env_bool("WEBHOOK_ALLOW_PRIVATE", False)
WEBHOOK_TIMEOUT_SECONDS = env_float("WEBHOOK_TIMEOUT_SECONDS", 5.0)
WEBHOOK_MAX_ATTEMPTS = env_int("WEBHOOK_MAX_ATTEMPTS", 8)
WEBHOOK_BACKOFF_SECONDS = env_float("WEBHOOK_BACKOFF_SECONDS", 2.0)
WEBHOOK_BACKOFF_MAX_SECONDS = env_float("WEBHOOK_BACKOFF_MAX_SECONDS", 600.0)
WEBHOOK_WORKERS = env_int("WEBHOOK_WORKERS", 8)  # in-process delivery threads (without Celery)
WEBHOOK_LOG_RETENTION_DAYS = env_int("WEBHOOK_LOG_RETENTION_DAYS", 30)
# Attendance: the days of the attendance sheet are days in this time zone.
ATTENDANCE_TIME_ZONE = env_str("ATTENDANCE_TIME_ZONE", TIME_ZONE)
# Prometheus /metrics: a bearer token, or a client address in METRICS_ALLOWED_NETWORKS (CIDRs).
METRICS_TOKEN = env_str("METRICS_TOKEN")
METRICS_ALLOWED_NETWORKS = env_list("METRICS_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")
# A camera worker's own metrics port (run_cameras --metrics-port), for workers on other hosts; 0: off.
CAMERA_METRICS_PORT = env_int("CAMERA_METRICS_PORT", 0)
CAMERA_METRICS_ADDRESS = env_str("CAMERA_METRICS_ADDRESS", "0.0.0.0")
# The live feed (ws/events/) looks for new and changed events and camera states this often.
FEED_POLL_SECONDS = env_float("FEED_POLL_SECONDS", 0.25)

# Jobs: Celery when a broker is configured, an in-process worker pool otherwise.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL")
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND") or REDIS_URL or None
CELERY_WORKER_CONCURRENCY = env_int("CELERY_WORKER_CONCURRENCY", 2)
# A broker outage fails a job's dispatch within seconds instead of hanging the request; a worker
# keeps reconnecting for as long as the broker is down.
CELERY_BROKER_CONNECTION_TIMEOUT = 3
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # A task taken by a worker that then dies (killed, its machine gone) is given to another worker
    # after visibility_timeout; a job running longer than that is given out twice (its progress
    # check keeps that safe, at the price of the work done twice): keep it above the longest job.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 3, "socket_timeout": 10,
                                       "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600)}
CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = 3  # the Redis result backend's
CELERY_REDIS_SOCKET_TIMEOUT = 10
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
JOBS_WORKERS = env_int("JOBS_WORKERS", 2)
# Periodic jobs for deployments that run `celery -A config beat`; the camera workers run the same
# retention pass hourly themselves, so nothing depends on beat running.
CELERY_BEAT_SCHEDULE = {
    "purge-event-crops": {"task": "events.tasks.purge_event_crops", "schedule": 3600.0},
    # Webhook deliveries a dead process had queued are sent again; old delivery logs are purged.
    "webhooks-maintenance": {"task": "webhooks.tasks.webhooks_maintenance", "schedule": 60.0},
}

LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOG_FORMATTERS = {
    "json": {"()": "core.logging.JsonFormatter"},
    "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
}


def logging_settings(log_format: str) -> dict[str, Any]:
    """Every record, Django's and Celery's included, through one handler: JSON lines or plain text."""
    if log_format not in LOG_FORMATTERS:
        raise ImproperlyConfigured(f"LOG_FORMAT must be json or text, got {log_format!r}")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": LOG_FORMATTERS[log_format]},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "default"}},
        "root": {"handlers": ["console"], "level": LOG_LEVEL},
        "loggers": {
            # Naming Django's loggers drops the handlers Django gives them: they reach the root's once.
            "django": {"level": "INFO"},
            "django.server": {"level": "WARNING", "propagate": True},  # requests: core.middleware logs them
            # faiss announces which CPU build it loaded at INFO on every start.
            "faiss.loader": {"level": "WARNING"},
        },
    }


LOGGING_CONFIG = "core.logging.configure"
LOGGING = logging_settings(env_str("LOG_FORMAT", "text"))

# API tokens (core/authentication.py, core/apis.py TokenApi). A token stops working
# TOKEN_TTL_HOURS after it was issued (0: never); POST /api/auth/token/ then issues a new one.
# Asking for one is limited per client address (every attempt) and per account (failed passwords,
# from any address): "<count>/<second|minute|hour|day>", "0" for no limit. Over it: 429 + Retry-After.
TOKEN_TTL_HOURS = env_float("TOKEN_TTL_HOURS", 24 * 30)
TOKEN_RATE_PER_ADDRESS = env_str("TOKEN_RATE_PER_ADDRESS", "20/minute")
TOKEN_RATE_PER_ACCOUNT = env_str("TOKEN_RATE_PER_ACCOUNT", "10/hour")


def _check_token_rate(name: str, value: str) -> None:
    import re

    if value.strip() not in ("", "0") and not re.fullmatch(r"\d+/(s|sec|second|m|min|minute|h|hour|d|day)",
                                                           value.strip()):
        raise ImproperlyConfigured(f"{name} must look like 10/minute (or 0 for no limit), got {value!r}")


_check_token_rate("TOKEN_RATE_PER_ADDRESS", TOKEN_RATE_PER_ADDRESS)
_check_token_rate("TOKEN_RATE_PER_ACCOUNT", TOKEN_RATE_PER_ACCOUNT)
if TOKEN_TTL_HOURS < 0:
    raise ImproperlyConfigured(f"TOKEN_TTL_HOURS must be 0 (never) or more, got {TOKEN_TTL_HOURS}")

# ---- Unknown identities (unknowns/: sightings of unknown faces, clustered into lasting identities) ----
# A face joins an unknown cluster when its mean distance to the cluster's faces is at most this
# (chosen on LFW: docs/performance.md, "Unknown identities"); under FACE_MATCH_THRESHOLD on purpose.
UNKNOWN_CLUSTER_JOIN_DISTANCE = env_float("UNKNOWN_CLUSTER_JOIN_DISTANCE", 0.46)
# Crops and embeddings of sightings not in a named cluster are deleted after this many days (0: kept);
# the rows stay (when and where a face was seen), as does their cluster's centroid.
UNKNOWN_CROP_RETENTION_DAYS = env_int("UNKNOWN_CROP_RETENTION_DAYS", 30)
# Open and discarded clusters not seen for this many days are deleted with their sightings (0: kept).
UNKNOWN_CLUSTER_RETENTION_DAYS = env_int("UNKNOWN_CLUSTER_RETENTION_DAYS", 90)
# Naming a cluster enrols at most this many of its best faces (sharpest and largest crops).
UNKNOWN_NAME_MAX_FACES = env_int("UNKNOWN_NAME_MAX_FACES", 5)
for _name in ("UNKNOWN_CROP_RETENTION_DAYS", "UNKNOWN_CLUSTER_RETENTION_DAYS"):
    if globals()[_name] < 0:
        raise ImproperlyConfigured(f"{_name} must be 0 (kept) or more")
if not 0 < UNKNOWN_CLUSTER_JOIN_DISTANCE <= 2:
    raise ImproperlyConfigured("UNKNOWN_CLUSTER_JOIN_DISTANCE must be in (0, 2]")
if UNKNOWN_NAME_MAX_FACES < 1:
    raise ImproperlyConfigured("UNKNOWN_NAME_MAX_FACES must be 1 or more")
CELERY_BEAT_SCHEDULE["purge-unknowns"] = {"task": "unknowns.tasks.purge_unknowns", "schedule": 3600.0}
CELERY_BEAT_SCHEDULE["compact-index-log"] = {"task": "core.tasks.compact_index_log", "schedule": 3600.0}
# The schema's name for a cluster's state (the cameras' "state" has another set of choices).
SPECTACULAR_SETTINGS.setdefault("ENUM_NAME_OVERRIDES", {})["UnknownClusterStateEnum"] = (
    "unknowns.models.UnknownCluster.State")

# ---- Data rights (privacy/: a person's export, gallery export and import) ----
# What POST /api/galleries/import/ takes: the archive as uploaded (REQUEST_MAX_BODY_BYTES must allow
# it too), its entries, the manifest and all entries uncompressed (a photo: MAX_UPLOAD_BYTES, as at
# enrolment), and the compression ratio past which an entry over 1 MiB is taken for a zip bomb.
IMPORT_MAX_BYTES = env_int("IMPORT_MAX_BYTES", 256 * 1024 * 1024)
IMPORT_MAX_ENTRIES = env_int("IMPORT_MAX_ENTRIES", 50000)
IMPORT_MAX_MANIFEST_BYTES = env_int("IMPORT_MAX_MANIFEST_BYTES", 64 * 1024 * 1024)
IMPORT_MAX_UNCOMPRESSED_BYTES = env_int("IMPORT_MAX_UNCOMPRESSED_BYTES", 1024 * 1024 * 1024)
IMPORT_MAX_RATIO = env_int("IMPORT_MAX_RATIO", 100)

# Enrolment quality gate (issue 11; people/quality.py, face_engine/quality.py). A new face under
# any threshold is refused with a reason code (face_too_small, blurry, extreme_pose,
# low_confidence, cut_off) unless forced; the defaults were chosen by
# `python -m face_engine.bench.quality` on LFW and the project's photos (docs/performance.md).
from face_engine.quality import DEFAULT_THRESHOLDS as QUALITY_DEFAULTS  # noqa: E402 - this block's own import

QUALITY_GATE = env_bool("QUALITY_GATE", True)
QUALITY_MIN_FACE_SIZE = env_float("QUALITY_MIN_FACE_SIZE", QUALITY_DEFAULTS.min_face_size)  # px, brows to lip
QUALITY_MIN_SHARPNESS = env_float("QUALITY_MIN_SHARPNESS", QUALITY_DEFAULTS.min_sharpness)  # LoG variance
QUALITY_MAX_YAW = env_float("QUALITY_MAX_YAW", QUALITY_DEFAULTS.max_yaw)  # degrees
QUALITY_MAX_PITCH = env_float("QUALITY_MAX_PITCH", QUALITY_DEFAULTS.max_pitch)  # degrees
QUALITY_MAX_ROLL = env_float("QUALITY_MAX_ROLL", QUALITY_DEFAULTS.max_roll)  # degrees
QUALITY_MIN_DETECTION_SCORE = env_float("QUALITY_MIN_DETECTION_SCORE", QUALITY_DEFAULTS.min_detection_score)
QUALITY_MAX_CUT_OFF = env_float("QUALITY_MAX_CUT_OFF", QUALITY_DEFAULTS.max_cut_off)  # share outside the photo
for _name in ("QUALITY_MIN_FACE_SIZE", "QUALITY_MIN_SHARPNESS", "QUALITY_MAX_YAW", "QUALITY_MAX_PITCH",
              "QUALITY_MAX_ROLL", "QUALITY_MAX_CUT_OFF"):
    if globals()[_name] < 0:
        raise ImproperlyConfigured(f"{_name} must be 0 or more, got {globals()[_name]}")
if QUALITY_MAX_CUT_OFF > 1:
    raise ImproperlyConfigured(f"QUALITY_MAX_CUT_OFF is a share of the face, 0 to 1; got {QUALITY_MAX_CUT_OFF}")

# Duplicate identities (people/duplicates.py): an enrolment whose face is within this distance of
# another person's face is refused as possible_duplicate unless forced (the staff pass,
# /api/people/duplicates/, defaults to FACE_MATCH_THRESHOLD). Under FACE_MATCH_THRESHOLD on purpose:
# about 1 % of pairs of different people are within 0.6 (LFW), so at 0.6 nearly every enrolment
# into a gallery of a few hundred people would be flagged; 0.45 still finds 19 of 20 planted
# duplicates (docs/performance.md, "Duplicate identities").
DUPLICATE_THRESHOLD = env_float("DUPLICATE_THRESHOLD", 0.45)
if not 0 < DUPLICATE_THRESHOLD <= 2:
    raise ImproperlyConfigured(f"DUPLICATE_THRESHOLD must be in (0, 2], got {DUPLICATE_THRESHOLD}")
