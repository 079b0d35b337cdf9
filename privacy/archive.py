"""Zip archives: written as a stream (bounded memory, any size), and read back only after every
entry has been checked (sizes, compression ratio, names), so that an archive sent by a client
cannot fill the disk or memory, nor write outside where it is put.

No Django models here: the gallery manifest's schema is in privacy/manifest.py, the services that
build and import archives in privacy/services.py."""

from __future__ import annotations

import io
import re
import stat
import time
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from core.errors import ServiceError

CHUNK = 64 * 1024
# A compression ratio is only suspicious in an entry large enough to matter once inflated.
RATIO_MIN_BYTES = 1024 * 1024
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# ---- writing --------------------------------------------------------------------------------

class _Sink(io.RawIOBase):
    """What zipfile writes into: the bytes are taken out after each piece, so the archive is never
    held whole. Not seekable, so zipfile writes each entry's sizes after its data."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        data = bytes(data)
        self._chunks.append(data)
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


@dataclass
class Entry:
    """One file of an archive being written: its name and its content, produced when its turn
    comes (``content`` is called then: bytes, or an iterable of byte chunks)."""

    name: str
    content: object  # Callable[[], bytes | Iterable[bytes]]
    compress: bool = True  # False for JPEG/PNG: already compressed


def zip_stream(entries: Iterable[Entry]) -> Iterator[bytes]:
    """The archive of ``entries``, piece by piece (at most a chunk of one file held at a time).
    ``entries`` may be a generator: an entry can depend on the ones before it (a manifest written
    last, with the checksums of the files streamed before it)."""
    sink = _Sink()
    stamp = time.gmtime()[:6]
    with zipfile.ZipFile(sink, "w", allowZip64=True) as archive:
        for entry in entries:
            info = zipfile.ZipInfo(entry.name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED if entry.compress else zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            content = entry.content()
            with archive.open(info, "w") as out:  # < 2 GiB each: no zip64 needed
                for chunk in [content] if isinstance(content, bytes) else content:
                    out.write(chunk)
                    data = sink.take()
                    if data:
                        yield data
            data = sink.take()
            if data:
                yield data
    yield sink.take()  # the central directory


def file_chunks(field) -> Iterator[bytes]:
    """A stored file (a FieldFile), read a chunk at a time."""
    with field.storage.open(field.name, "rb") as handle:
        while chunk := handle.read(CHUNK):
            yield chunk


# ---- reading --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Limits:
    archive_bytes: int  # the archive as uploaded
    entries: int
    entry_bytes: int  # one file, uncompressed (a photo)
    manifest_bytes: int  # the manifest, uncompressed
    total_bytes: int  # every entry, uncompressed
    ratio: int  # uncompressed / compressed, past RATIO_MIN_BYTES


def invalid(message: str, **details) -> ServiceError:
    return ServiceError("invalid_archive", message, status_code=400, details=details or None)


def too_large(message: str, **details) -> ServiceError:
    return ServiceError("archive_too_large", message, status_code=413, details=details or None)


def unsafe_name_problem(info: zipfile.ZipInfo) -> str | None:
    """Why an entry's name (or type) could write outside the folder it is extracted into, or be
    taken for another entry; None when it is safe."""
    name, original = info.filename, info.orig_filename
    if _CONTROL.search(original) or _CONTROL.search(name):
        return "a control character (NUL included) in the name"
    if "\\" in name:
        return "a backslash in the name"
    if name.startswith("/"):
        return "an absolute path"
    if _DRIVE.match(name):
        return "a drive letter"
    parts = name.rstrip("/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "a '..', '.' or empty path segment"
    kind = stat.S_IFMT(info.external_attr >> 16)  # 0: no Unix type given (a plain file)
    if info.create_system == 3 and kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "a symbolic link or special file"
    return None


def open_checked(upload, limits: Limits, *, small_entries: Iterable[str] = ()) -> zipfile.ZipFile:
    """``upload`` (a file object) opened as a zip archive once its directory passes every check:
    the archive's size, the number of entries, names, duplicates, encryption, compression method,
    each entry's and the total uncompressed size, and each large entry's compression ratio.
    ``small_entries`` may be larger than a photo (up to ``limits.manifest_bytes``)."""
    size = getattr(upload, "size", None)
    if size is not None and size > limits.archive_bytes:
        raise too_large(f"The archive is {size} bytes; the limit is {limits.archive_bytes} bytes "
                        "(IMPORT_MAX_BYTES).", limit=limits.archive_bytes)
    try:
        archive = zipfile.ZipFile(upload)
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        raise invalid(f"Not a readable zip archive (truncated or corrupt?): {exc}") from None
    try:
        _check_directory(infos, limits, set(small_entries))
    except BaseException:
        archive.close()
        raise
    return archive


def _check_directory(infos: list[zipfile.ZipInfo], limits: Limits, small_entries: set[str]) -> None:
    if len(infos) > limits.entries:
        raise too_large(f"The archive has {len(infos)} entries; the limit is {limits.entries} "
                        "(IMPORT_MAX_ENTRIES).", limit=limits.entries)
    seen: set[str] = set()
    total = 0
    for info in infos:
        problem = unsafe_name_problem(info)
        if problem is not None:
            raise ServiceError("unsafe_path", f"Entry {info.orig_filename[:200]!r}: {problem}.", status_code=400,
                               details={"entry": info.orig_filename[:200]})
        if info.filename in seen:
            raise ServiceError("unsafe_path", f"Entry {info.filename[:200]!r} appears twice.", status_code=400,
                               details={"entry": info.filename[:200]})
        seen.add(info.filename)
        if info.flag_bits & 0x1:
            raise invalid(f"Entry {info.filename[:200]!r} is encrypted.", entry=info.filename[:200])
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise invalid(f"Entry {info.filename[:200]!r}: compression method {info.compress_type} is not "
                          "supported (stored or deflated only).", entry=info.filename[:200])
        limit = limits.manifest_bytes if info.filename in small_entries else limits.entry_bytes
        if info.file_size > limit:
            raise too_large(f"Entry {info.filename[:200]!r} is {info.file_size} bytes uncompressed; the limit is "
                            f"{limit} bytes.", entry=info.filename[:200], limit=limit)
        if info.file_size > RATIO_MIN_BYTES and info.file_size > limits.ratio * max(1, info.compress_size):
            raise too_large(f"Entry {info.filename[:200]!r} inflates {info.file_size // max(1, info.compress_size)} "
                            f"times (a zip bomb?); the limit is {limits.ratio} (IMPORT_MAX_RATIO).",
                            entry=info.filename[:200], limit=limits.ratio)
        total += info.file_size
        if total > limits.total_bytes:
            raise too_large(f"The archive's entries add up to more than {limits.total_bytes} bytes uncompressed "
                            "(IMPORT_MAX_UNCOMPRESSED_BYTES).", limit=limits.total_bytes)


def read_entry(archive: zipfile.ZipFile, name: str, *, limit: int) -> bytes:
    """An entry's bytes, read a chunk at a time and never past ``limit`` (whatever its header
    declares); a CRC or data error is an invalid archive."""
    try:
        with archive.open(name) as handle:
            data = bytearray()
            while chunk := handle.read(CHUNK):
                data += chunk
                if len(data) > limit:
                    raise too_large(f"Entry {name[:200]!r} inflates past {limit} bytes.", entry=name[:200],
                                    limit=limit)
            return bytes(data)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise invalid(f"Entry {name[:200]!r} cannot be read (truncated or corrupt?): {exc}",
                      entry=name[:200]) from None
    except Exception as exc:  # zlib.error and the like: the entry's data is broken
        if isinstance(exc, ServiceError):
            raise
        raise invalid(f"Entry {name[:200]!r} cannot be read: {exc}", entry=name[:200]) from None
