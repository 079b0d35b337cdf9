"""Every kind of bad upload gets a clear 4xx in the error shape: never a 500, never kept."""

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from conftest import MISC


def _png(size, mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG")
    return buffer.getvalue()


def _tiff() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buffer, format="TIFF")
    return buffer.getvalue()


REAL = (MISC / "obama_small.jpg").read_bytes()
BAD_FILES = {
    "empty": (b"", "empty_file", 400),
    "text renamed .jpg": (b"just some text, not a picture\n" * 20, "not_an_image", 400),
    "random bytes": (bytes(range(256)) * 40, "not_an_image", 400),
    "truncated jpeg": (REAL[: len(REAL) // 2], "corrupt_image", 400),
    "jpeg header only": (REAL[:200], "corrupt_image", 400),
    "decompression bomb": (_png((20000, 20000), "1"), "image_too_large", 413),
    "tiff": (_tiff(), "unsupported_format", 415),
}


@pytest.fixture
def person(db):
    from people.services import person_create

    return person_create(name="Target")


def _file(data: bytes, name: str = "photo.jpg"):
    return SimpleUploadedFile(name, data, content_type="image/jpeg")


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_recognize_refuses(user_client, engine, case):
    data, code, status = BAD_FILES[case]
    response = user_client.post("/api/faces/recognize/", {"image": _file(data)})
    assert response.status_code == status, response.content
    body = response.json()
    assert body["success"] is False and body["error"]["code"] == code and body["error"]["message"]


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_enrol_refuses_and_keeps_nothing(staff_client, engine, person, case):
    data, code, status = BAD_FILES[case]
    response = staff_client.post(f"/api/people/{person.pk}/faces/", {"image": _file(data)})
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert person.faces.count() == 0


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_verify_refuses(user_client, engine, case):
    data, code, status = BAD_FILES[case]
    response = user_client.post("/api/faces/verify/", {"image_a": _file(data), "image_b": _file(REAL)})
    assert response.status_code == status and response.json()["error"]["code"] == code


def test_files_over_the_byte_limit_are_413(user_client, staff_client, engine, person, settings):
    from dataclasses import replace

    settings.FACE_ENGINE = replace(settings.FACE_ENGINE, max_upload_bytes=len(REAL) - 1)
    response = user_client.post("/api/faces/recognize/", {"image": _file(REAL)})
    assert response.status_code == 413 and response.json()["error"]["code"] == "file_too_large"
    enrol = staff_client.post(f"/api/people/{person.pk}/faces/", {"image": _file(REAL)})
    assert enrol.status_code == 413 and person.faces.count() == 0


def test_images_over_the_pixel_limit_are_413(user_client, engine, settings):
    from dataclasses import replace

    settings.FACE_ENGINE = replace(settings.FACE_ENGINE, max_image_pixels=100 * 100)
    response = user_client.post("/api/faces/recognize/", {"image": _file(REAL)})
    assert response.status_code == 413 and response.json()["error"]["code"] == "image_too_large"


def test_wrong_content_types_and_shapes(user_client, staff_client, person):
    json_to_upload = user_client.post("/api/faces/recognize/", {"image": "abc"}, format="json")
    assert json_to_upload.status_code == 415 and json_to_upload.json()["success"] is False
    broken_json = staff_client.generic("POST", "/api/people/", "{not json", content_type="application/json")
    assert broken_json.status_code == 400 and broken_json.json()["error"]["code"] == "parse_error"
    not_a_file = user_client.post("/api/faces/recognize/", {"image": "text"})
    assert not_a_file.status_code == 400
    wrong_field = user_client.post("/api/faces/recognize/", {"picture": _file(REAL)})
    assert wrong_field.status_code == 400 and "image" in wrong_field.json()["error"]["details"]
    wrong_method = user_client.get("/api/faces/recognize/")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "method_not_allowed"


def test_a_bad_image_in_a_batch_fails_alone(user_client, engine):
    images = [_file(data, f"{case}.jpg") for case, (data, _, _) in sorted(BAD_FILES.items())]
    images.append(_file(REAL, "good.jpg"))
    body = user_client.post("/api/faces/batch-recognize/", {"images": images}).json()
    assert body["failed"] == len(BAD_FILES) and body["processed"] == 1
    assert body["results"][-1]["success"] is True and len(body["results"][-1]["faces"]) == 1
    codes = [r["error"]["code"] for r in body["results"][:-1]]
    assert codes == [code for _, (_, code, _) in sorted(BAD_FILES.items())]


@pytest.mark.parametrize("value", ["²", "١٢", "99999999999999999999999", "9223372036854775808"])
def test_a_gallery_id_that_is_no_database_id_is_an_unknown_gallery(user_client, value):
    """Unicode digits pass str.isdigit() and ids past int64 overflow the database: both are simply
    no gallery (the live stream, the events and cameras filters resolve galleries the same way)."""
    for path in ("/api/people/", "/api/events/", "/api/cameras/"):
        response = user_client.get(path, {"gallery": value})
        assert response.status_code == 400, (path, response.content)
        assert response.json()["error"]["code"] in ("unknown_gallery", "invalid"), (path, response.json())


@pytest.mark.parametrize("value", ["²", "99999999999999999999999"])
def test_a_person_s_gallery_that_is_no_database_id_is_refused(staff_client, value):
    response = staff_client.post("/api/people/", {"name": "Ann", "galleries": [value]}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid"


@pytest.mark.parametrize("value", ["\x00áB", "not a slug!", "x" * 101])
def test_a_person_s_gallery_that_is_no_slug_is_refused_without_asking_the_database(staff_client, value):
    """A form field may carry a NUL (JSON bodies cannot: core/parsers.py), which PostgreSQL refuses in
    any query: a value no slug could be is no gallery, a 400, never a 503 (found by schemathesis)."""
    response = staff_client.post("/api/people/", {"name": "Ann", "galleries": [value]})
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid"
    for path in ("/api/people/", "/api/events/", "/api/cameras/"):
        assert staff_client.get(path, {"gallery": value.replace("\x00", "")}).status_code == 400
