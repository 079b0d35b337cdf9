"""Fuzz the multipart uploads of enrolment and recognition: bodies built from the fuzzer's bytes
(boundaries, part headers, field names, file names, values, truncations; or raw bytes under a
multipart content type) go through the whole Django stack (Django's multipart parser, DRF's
parsers and serializers, the views, the services) with a staff token, on a throw-away database.

Every answer must be below 500, and every refusal in the error shape; an exception out of the
view is a crash. Seeds: a real photo in a well-formed body for each endpoint."""

from __future__ import annotations

import json

import _common
import atheris

with atheris.instrument_imports(include=_common.SERVICE_PACKAGES):
    IDS = _common.django_setup()
    from django.test import Client

PHOTO = _common.SEED_PHOTOS[0].read_bytes()  # a face: the whole engine runs (slow: the raw seeds only)
TINY = _common.small_images()[2]  # a valid image without a face: decoded and detected in a millisecond
ENDPOINTS = [f"/api/people/{IDS['person_id']}/faces/", "/api/faces/recognize/", "/api/faces/batch-recognize/",
             "/api/faces/verify/"]
FIELDS = [b"image", b"images", b"image_a", b"image_b", b"person_id", b"largest", b"async", b"match_count",
          b"threshold", b"return_all_matches", b"gallery"]
VALUES = [b"", b"0", b"1", b"5", b"-1", b"true", b"false", b"nan", b"inf", b"1e309", b"\xc2\xb2",
          b"9223372036854775808", b"0.0", b"2.0000001", b"\x00", str(IDS["person_id"]).encode()]
CONTENT_TYPES = [b"image/jpeg", b"application/octet-stream", b"text/plain; charset=utf-16", b"", b"\xff"]
BOUNDARY = b"fuzzboundary"
client = Client()


def _part(fdp: atheris.FuzzedDataProvider) -> bytes:
    name = fdp.PickValueInList(FIELDS) if fdp.ConsumeBool() else fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 40))
    disposition = b'Content-Disposition: form-data; name="' + name + b'"'
    kind = fdp.ConsumeIntInRange(0, 3)
    if kind == 0:  # a scalar field
        payload = fdp.PickValueInList(VALUES)
    else:  # a file: a valid image, a cut of the photo, or the fuzzer's bytes
        disposition += b'; filename="' + fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 24)) + b'"'
        payload = (TINY if kind == 1 else PHOTO[: fdp.ConsumeIntInRange(0, len(PHOTO) - 1)] if kind == 2
                   else fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 4096)))
        disposition += b"\r\nContent-Type: " + fdp.PickValueInList(CONTENT_TYPES)
    if fdp.ConsumeIntInRange(0, 7) == 0:  # an extra header line, of any kind
        disposition += b"\r\n" + fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64))
    return disposition + b"\r\n\r\n" + payload


def _request(data: bytes) -> tuple[str, bytes, str]:
    fdp = atheris.FuzzedDataProvider(data)
    path = fdp.PickValueInList(ENDPOINTS)
    boundary = BOUNDARY if fdp.ConsumeIntInRange(0, 7) else fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 80))
    content_type = "multipart/form-data; boundary=" + boundary.decode("latin-1")
    if fdp.ConsumeIntInRange(0, 15) == 0:
        content_type = fdp.PickValueInList(["multipart/form-data", "multipart/mixed; boundary=fuzzboundary",
                                            "application/json", "application/x-www-form-urlencoded",
                                            "text/plain", "multipart/form-data; boundary="])
    if fdp.ConsumeBool():  # structured: parts the fuzzer chooses
        parts = [_part(fdp) for _ in range(fdp.ConsumeIntInRange(0, 6))]
        body = b"".join(b"--" + BOUNDARY + b"\r\n" + part + b"\r\n" for part in parts)
        if fdp.ConsumeIntInRange(0, 3):
            body += b"--" + BOUNDARY + b"--\r\n"
        body += fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 32))  # trailing bytes, or nothing
    else:  # raw: the remaining bytes are the body
        body = fdp.ConsumeBytes(fdp.remaining_bytes())
    return path, body, content_type


def test_one_input(data: bytes) -> None:
    path, body, content_type = _request(data)
    response = client.generic("POST", path, body, content_type=content_type,
                              HTTP_AUTHORIZATION=f"Bearer {IDS['staff']}")
    if response.status_code >= 500:
        raise _common.Finding(f"{path}: {response.status_code} {response.content[:300]!r}")
    if response.status_code < 400:
        return
    payload = response.json()
    if response.status_code == 422 and isinstance(payload.get("results"), list):  # several files, none taken
        for result in payload["results"]:
            _common.error_shape(json.dumps(result).encode())
    else:
        _common.error_shape(response.content)


def seeds() -> list[bytes]:
    def raw(index: int, fields: list[tuple[bytes, bytes, bool]]) -> bytes:
        body = b"".join(b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="' + name + b'"'
                        + (b'; filename="a.jpg"\r\nContent-Type: image/jpeg' if is_file else b"")
                        + b"\r\n\r\n" + value + b"\r\n" for name, value, is_file in fields)
        # Bytes that make the FuzzedDataProvider pick this endpoint, the usual boundary and raw mode.
        return bytes([index, 1, 1, 0]) + body + b"--" + BOUNDARY + b"--\r\n"

    return [raw(0, [(b"image", PHOTO, True)]), raw(1, [(b"image", PHOTO, True), (b"match_count", b"3", False)]),
            raw(2, [(b"images", PHOTO, True), (b"images", b"garbage", True)]),
            raw(3, [(b"image", PHOTO, True), (b"person_id", str(IDS["person_id"]).encode(), False)]),
            bytes(64), bytes(range(256))]


if __name__ == "__main__":
    _common.run(test_one_input, seeds())
