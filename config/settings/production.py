"""Production: DEBUG off, the secret key and host names required, HTTPS only, static files served
by WhiteNoise, logs as JSON lines. `make serve` runs it under gunicorn (gunicorn.conf.py)."""

from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_int, env_list, env_str
from config.settings.base import *  # noqa: F403
from config.settings.base import DEV_SECRET_KEY, VAR_DIR, logging_settings

DEBUG = False

# The machine's processes map one copy of the face index (core/index/shared.py); "" turns it off.
FACE_INDEX_SHARED_DIR = env_str("FACE_INDEX_SHARED_DIR", str(VAR_DIR / "index"))

SECRET_KEY = env_str("SECRET_KEY")
if SECRET_KEY in ("", DEV_SECRET_KEY) or len(SECRET_KEY) < 50:
    raise ImproperlyConfigured(
        "SECRET_KEY must be set to a random string of at least 50 characters in production, e.g. the output of "
        "python3 -c 'import secrets; print(secrets.token_urlsafe(50))'")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS")
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must list the host names this service answers to, comma-separated "
                               "(e.g. faces.example.com)")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

# HTTPS, usually terminated by a proxy in front that sets X-Forwarded-Proto (it must overwrite a
# client's). SECURE_SSL_REDIRECT=false where nothing but that proxy can reach the server.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
SECURE_REDIRECT_EXEMPT = [r"^api/health/$"]  # load balancers probe over plain HTTP
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 60 * 60 * 24 * 365)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
X_FRAME_OPTIONS = "DENY"

# Static files (the admin's, the API docs' Swagger UI, the live page's) from STATIC_ROOT, filled by
# collectstatic, served by WhiteNoise (in the middleware since the base settings).
WHITENOISE_USE_FINDERS = False
WHITENOISE_AUTOREFRESH = False
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

LOGGING = logging_settings(env_str("LOG_FORMAT", "json"))
