"""Every environment variable the service reads, in one place (see README's configuration table)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from exc


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from exc


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def redacted(url: str) -> str:
    """The URL for an error message: its password, if any, hidden."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


def sqlite_path_from_url(url: str) -> str:
    """sqlite:///relative/path or sqlite:////absolute/path (the SQLAlchemy and dj-database-url form)."""
    path = urlsplit(url).path.removeprefix("/")
    if not path:
        raise ImproperlyConfigured(f"DATABASE_URL {url!r} names no file: use sqlite:///relative or sqlite:////absolute")
    return unquote(path)


def postgres_from_url(url: str) -> dict[str, Any]:
    """postgres://user:password@host:port/name?sslmode=require -> Django's HOST, NAME, … and OPTIONS."""
    parts = urlsplit(url)
    name = unquote(parts.path.removeprefix("/"))
    try:
        port = parts.port
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL has a bad port: {redacted(url)!r}") from exc
    if not name or not parts.hostname:
        raise ImproperlyConfigured(f"DATABASE_URL must name a host and a database (postgres://user@host:5432/name), "
                                   f"got {redacted(url)!r}")
    return {
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname,
        "PORT": str(port or ""),
        "OPTIONS": dict(parse_qsl(parts.query)),
    }


def settings_or_exit() -> None:
    """Load Django's settings now, so that a bad variable ends the process with its message alone
    instead of a traceback from deep inside Django (manage.py, gunicorn's master)."""
    from django.conf import settings

    try:
        settings.SECRET_KEY  # noqa: B018 - touching a setting loads them all
    except (ImproperlyConfigured, ValueError) as exc:  # ValueError: the engine's FACE_* variables
        sys.exit(f"Configuration error: {exc}")
