"""A camera's source URL, checked before anything opens it: rtsp(s)://, http(s):// (MJPEG) or
file:// (a video file under a root folder, nowhere else)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

MAX_URL_LENGTH = 2000
NETWORK_SCHEMES = ("rtsp", "rtsps", "http", "https")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class SourceError(ValueError):
    """A source URL that is refused; ``message`` says why, for people."""

    def __init__(self, message: str, code: str = "invalid_source") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class SourceSpec:
    kind: str  # "rtsp", "http" or "file"
    url: str  # what FFmpeg opens: the network URL, or the file's resolved path
    loop: bool = False  # file: start again at the end
    display: str = ""  # the URL with its password hidden, for status and logs


def redact(url: str) -> str:
    """The URL with its password (if any) replaced by ***."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{password}@", ":***@", 1)).geturl()


def parse_source(url: str, *, file_root: str, must_exist: bool = True) -> SourceSpec:
    """Check ``url`` and say how to open it; SourceError with a clear message otherwise."""
    if not isinstance(url, str) or not url.strip():
        raise SourceError("The source URL is empty.")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise SourceError(f"The source URL is {len(url)} characters long; the limit is {MAX_URL_LENGTH}.")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise SourceError("The source URL contains spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise SourceError(f"The source URL is malformed: {exc}.") from exc
    scheme = parts.scheme.lower()
    if scheme in NETWORK_SCHEMES:
        if not parts.hostname:
            raise SourceError(f"A {scheme}:// source must name a host, e.g. {scheme}://camera.local/stream.")
        if port == 0:
            raise SourceError("The source URL's port must be between 1 and 65535.")
        kind = "rtsp" if scheme.startswith("rtsp") else "http"
        return SourceSpec(kind=kind, url=url, display=redact(url))
    if scheme == "file":
        return _file_source(parts.netloc + parts.path, parts.query, file_root, must_exist, url)
    raise SourceError("The source must be an rtsp://, rtsps://, http://, https:// (MJPEG) or file:// URL, "
                      f"not {parts.scheme + ':' if parts.scheme else 'a bare path'}.")


def _file_source(raw_path: str, query: str, file_root: str, must_exist: bool, url: str) -> SourceSpec:
    if not file_root:
        raise SourceError("file:// sources are disabled: CAMERA_FILE_ROOT is not set.")
    loop = False
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key != "loop":
            raise SourceError(f"A file:// source takes only the option loop, not {key!r}.")
        if value.lower() not in _TRUE + _FALSE:
            raise SourceError(f"loop must be true or false, got {value!r}.")
        loop = value.lower() in _TRUE
    if not raw_path:
        raise SourceError("A file:// source must name a video file.")
    if "\x00" in raw_path or ".." in Path(raw_path).parts:
        raise SourceError("A file:// source may not contain '..'.")
    root = Path(os.path.realpath(file_root))
    candidate = Path(raw_path)
    if not candidate.is_absolute():
        candidate = root / candidate
    resolved = Path(os.path.realpath(candidate))
    if resolved != root and root not in resolved.parents:
        raise SourceError(f"A file:// source must lie under CAMERA_FILE_ROOT ({root}).")
    if must_exist and not resolved.is_file():
        raise SourceError(f"No video file at {resolved}.", code="source_not_found")
    return SourceSpec(kind="file", url=str(resolved), loop=loop, display=url)
