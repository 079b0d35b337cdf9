"""Test settings: the configured database (a file SQLite shared by the job threads, or PostgreSQL
when DATABASE_URL is set, where Django creates test_<name>), throw-away media."""

import tempfile
from pathlib import Path

from config.settings.base import *  # noqa: F403
from config.settings.base import DATABASES, REST_FRAMEWORK

_TMP = Path(tempfile.mkdtemp(prefix="facerec-test-"))
MEDIA_ROOT = str(_TMP / "media")
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": str(_TMP / "test.sqlite3")}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = {"anon": "100000/minute", "user": "100000/minute"}
