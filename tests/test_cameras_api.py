"""Cameras: the API (CRUD, permissions, every refused input, redaction, status), the admin, and the
rule that configuration writes never touch the worker's lease and status columns."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from core.audit.models import AuditRecord
from core.errors import ServiceError
from people.services import gallery_create
from streams import services
from streams.models import Camera

CAMERAS = "/api/cameras/"
ADMIN = "/admin/streams/camera/"
SECRET = "s3cr3t-pw"
RTSP = f"rtsp://admin:{SECRET}@cam1.local:554/stream1"


@pytest.fixture
def video_root(settings, tmp_path):
    """A temporary CAMERA_FILE_ROOT holding one (dummy) video, and a file outside it."""
    root = tmp_path / "videos"
    (root / "sub").mkdir(parents=True)
    (root / "lobby.mp4").write_bytes(b"not really a video; the API never opens it")
    (root / "sub" / "door.mp4").write_bytes(b"x")
    (tmp_path / "outside.mp4").write_bytes(b"x")
    settings.CAMERA_FILE_ROOT = str(root)
    return root


@pytest.fixture
def gallery(db):
    return gallery_create(name="Staff", slug="staff")


def create(client, **payload):
    body = {"name": "Lobby", "source_url": RTSP, **payload}
    return client.post(CAMERAS, body, format="json")


def url(camera_id) -> str:
    return f"{CAMERAS}{camera_id}/"


# ---- CRUD and permissions ----------------------------------------------------------------------

def test_camera_crud_by_staff(staff_client, video_root, gallery):
    response = create(staff_client)
    assert response.status_code == 201, response.json()
    camera = response.json()
    assert camera["id"] and camera["name"] == "Lobby" and camera["source_kind"] == "rtsp"
    assert camera["gallery"] is None and camera["analysis_fps"] == 5.0 and camera["min_face_size"] == 80
    assert camera["enabled"] is True and camera["created_at"] and camera["updated_at"]
    assert camera["status"] == {
        "state": "stopped", "connected": False, "fps_in": 0.0, "fps_analysed": 0.0, "frames_in": 0,
        "frames_analysed": 0, "frames_dropped": 0, "last_error": "", "last_frame_at": None, "status_at": None,
        "worker": None, "lease_expires_at": None, "stale": False,
    }

    assert staff_client.get(url(camera["id"])).json()["name"] == "Lobby"
    patched = staff_client.patch(url(camera["id"]), {"gallery": "staff", "analysis_fps": 2.5, "enabled": False},
                                 format="json")
    assert patched.status_code == 200, patched.json()
    assert patched.json()["gallery"] == gallery.pk and patched.json()["analysis_fps"] == 2.5
    assert patched.json()["enabled"] is False and patched.json()["name"] == "Lobby"

    put = staff_client.put(url(camera["id"]), {"name": "Door", "source_url": "file://sub/door.mp4?loop=1",
                                               "gallery": None, "min_face_size": 40}, format="json")
    assert put.status_code == 200, put.json()
    assert put.json()["source_kind"] == "file" and put.json()["gallery"] is None
    assert put.json()["min_face_size"] == 40 and put.json()["source_url"] == "file://sub/door.mp4?loop=1"

    assert staff_client.delete(url(camera["id"])).status_code == 204
    missing = staff_client.get(url(camera["id"]))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_users_read_but_only_staff_write(staff_client, user_client, anon_client, video_root):
    camera = create(staff_client, source_url="http://cam2.local/mjpeg").json()
    listed = user_client.get(CAMERAS).json()
    assert listed["count"] == 1 and listed["results"][0]["status"]["state"] == "stopped"
    detail = user_client.get(url(camera["id"])).json()
    assert detail["source_kind"] == "http" and "status" in detail

    for response in (create(user_client, name="Other"),
                     user_client.patch(url(camera["id"]), {"name": "X"}, format="json"),
                     user_client.put(url(camera["id"]), {"name": "X", "source_url": RTSP}, format="json"),
                     user_client.delete(url(camera["id"]))):
        assert response.status_code == 403 and response.json()["error"]["code"] == "permission_denied"
    for response in (anon_client.get(CAMERAS), anon_client.get(url(camera["id"])), create(anon_client)):
        assert response.status_code == 401 and response.json()["success"] is False
    assert Camera.objects.get().name == "Lobby"


# ---- refused input -----------------------------------------------------------------------------

@pytest.mark.parametrize("payload,field,code,says", [
    ({"source_url": "file:///etc/passwd"}, "source_url", "invalid_source", "CAMERA_FILE_ROOT"),
    ({"source_url": "file://../outside.mp4"}, "source_url", "invalid_source", "'..'"),
    ({"source_url": "file://sub/../../outside.mp4"}, "source_url", "invalid_source", "'..'"),
    ({"source_url": "file://missing.mp4"}, "source_url", "source_not_found", "No video file"),
    ({"source_url": "file://lobby.mp4?speed=2"}, "source_url", "invalid_source", "only the option loop"),
    ({"source_url": "ftp://cam.local/video"}, "source_url", "invalid_source", "rtsp://"),
    ({"source_url": "/var/videos/a.mp4"}, "source_url", "invalid_source", "bare path"),
    ({"source_url": "rtsp:///stream"}, "source_url", "invalid_source", "must name a host"),
    ({"source_url": "rtsp://cam.local:0/x"}, "source_url", "invalid_source", "port"),
    ({"source_url": "rtsp://cam.local/my stream"}, "source_url", "invalid_source", "spaces"),
    ({"source_url": "   "}, "source_url", "invalid", "blank"),
    ({"source_url": "rtsp://cam.local/" + "a" * 2000}, "source_url", "invalid_source", "the limit is 2000"),
    ({"analysis_fps": 0}, "analysis_fps", "invalid", "more than 0"),
    ({"analysis_fps": -1}, "analysis_fps", "invalid", "more than 0"),
    ({"analysis_fps": 31}, "analysis_fps", "invalid", "at most 30"),
    ({"analysis_fps": "abc"}, "analysis_fps", "invalid", "number"),
    ({"min_face_size": 5}, "min_face_size", "invalid", "between 20 and 2000"),
    ({"min_face_size": 2001}, "min_face_size", "invalid", "between 20 and 2000"),
    ({"min_face_size": 40.5}, "min_face_size", "invalid", "integer"),
    ({"gallery": "no-such-gallery"}, "gallery", "unknown_gallery", "No gallery"),
    ({"gallery": 999999}, "gallery", "unknown_gallery", "No gallery"),
    ({"enabled": "maybe"}, "enabled", "invalid", "boolean"),
    ({"name": ""}, "name", "invalid", "blank"),
    ({"name": "n" * 101}, "name", "invalid", "limit is 100"),
])
def test_bad_input_is_a_clear_400(staff_client, video_root, payload, field, code, says):
    response = create(staff_client, **payload)
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert response.json()["success"] is False and error["code"] == code
    assert list(error["details"]) == [field]
    assert says in error["message"] and error["message"].startswith(f"{field}: ")
    assert not Camera.objects.exists()


def test_file_sources_under_the_root_are_accepted(staff_client, video_root):
    for i, source in enumerate(["file://lobby.mp4", "file://sub/door.mp4?loop=true", f"file://{video_root}/lobby.mp4"]):
        response = create(staff_client, name=f"Video {i}", source_url=source)
        assert response.status_code == 201, response.json()
        assert response.json()["source_kind"] == "file"


def test_a_form_post_without_enabled_keeps_the_default(staff_client, video_root):
    # Form-encoded input omits unchecked booleans; a missing "enabled" must not mean false.
    response = staff_client.post(CAMERAS, {"name": "Form", "source_url": RTSP, "analysis_fps": "2"})
    assert response.status_code == 201 and response.json()["enabled"] is True
    assert response.json()["analysis_fps"] == 2.0


def test_several_refused_fields_are_reported_together(staff_client, video_root):
    response = create(staff_client, source_url="ftp://x/y", analysis_fps=0)
    error = response.json()["error"]
    assert response.status_code == 400 and error["code"] == "invalid"
    assert set(error["details"]) == {"source_url", "analysis_fps"}


def test_missing_fields_on_post(staff_client, video_root):
    response = staff_client.post(CAMERAS, {}, format="json")
    error = response.json()["error"]
    assert response.status_code == 400 and error["code"] == "invalid"
    assert set(error["details"]) == {"name", "source_url"} and "required" in error["message"]
    not_an_object = staff_client.post(CAMERAS, [1, 2], format="json")
    assert not_an_object.status_code == 400 and "dictionary" in not_an_object.json()["error"]["message"]


def test_names_are_unique(staff_client, video_root):
    first = create(staff_client).json()
    dup = create(staff_client, source_url="rtsp://other.local/")
    assert dup.status_code == 400 and dup.json()["error"]["code"] == "invalid"
    assert "already exists" in dup.json()["error"]["details"]["name"][0]
    second = create(staff_client, name="Yard").json()
    rename = staff_client.patch(url(second["id"]), {"name": "Lobby"}, format="json")
    assert rename.status_code == 400 and "already exists" in rename.json()["error"]["message"]
    # Keeping its own name is no conflict.
    assert staff_client.put(url(first["id"]), {"name": "Lobby", "source_url": RTSP}, format="json").status_code == 200


def test_bad_patch_changes_nothing(staff_client, video_root):
    camera = create(staff_client).json()
    response = staff_client.patch(url(camera["id"]), {"name": "New", "source_url": "file:///etc/passwd"}, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_source"
    stored = Camera.objects.get()
    assert stored.name == "Lobby" and stored.source_url == RTSP


# ---- redaction ---------------------------------------------------------------------------------

def test_passwords_never_leave_the_server(staff_client, user_client, video_root):
    camera = create(staff_client).json()
    redacted = "rtsp://admin:***@cam1.local:554/stream1"
    assert camera["source_url"] == redacted
    for client in (staff_client, user_client):
        for response in (client.get(CAMERAS), client.get(url(camera["id"]))):
            assert SECRET not in response.content.decode() and redacted in response.content.decode()

    # A PATCH without source_url keeps it; a PUT giving the redacted URL back keeps the password too.
    staff_client.patch(url(camera["id"]), {"name": "Lobby 2"}, format="json")
    assert Camera.objects.get().source_url == RTSP
    put = staff_client.put(url(camera["id"]), {"name": "Lobby 2", "source_url": redacted.replace("stream1", "stream2")},
                           format="json")
    assert put.status_code == 200 and SECRET not in put.content.decode()
    assert Camera.objects.get().source_url == RTSP.replace("stream1", "stream2")
    # *** stands for the stored password only where it was used: never sent to another host.
    moved = staff_client.patch(url(camera["id"]), {"source_url": "rtsp://admin:***@evil.example/"}, format="json")
    assert moved.status_code == 400 and moved.json()["error"]["code"] == "invalid_source"
    assert "type the password" in moved.json()["error"]["message"]
    assert SECRET not in moved.content.decode()
    assert not AuditRecord.objects.filter(details__icontains=SECRET).exists()


# ---- status and lease --------------------------------------------------------------------------

def worker_reports(camera_id, **extra):
    now = timezone.now()
    fields = dict(state="connected", fps_in=4.9, fps_analysed=2.0, frames_in=1200, frames_analysed=480,
                  frames_dropped=3, last_error="", last_frame_at=now, status_at=now, lease_owner="w1",
                  lease_expires_at=now + timedelta(seconds=15))
    fields.update(extra)
    Camera.objects.filter(pk=camera_id).update(**fields)
    return fields


def test_configuration_writes_keep_the_workers_columns(staff_client, video_root):
    camera = create(staff_client).json()
    reported = worker_reports(camera["id"])
    before = Camera.objects.get(pk=camera["id"])

    patched = staff_client.patch(url(camera["id"]), {"name": "Renamed"}, format="json")
    assert patched.status_code == 200
    after = Camera.objects.get(pk=camera["id"])
    for field, value in reported.items():
        assert getattr(after, field) == value, field
    assert after.updated_at > before.updated_at and after.name == "Renamed"
    status = patched.json()["status"]
    assert status["state"] == "connected" and status["connected"] is True and status["worker"] == "w1"
    assert status["fps_in"] == 4.9 and status["frames_dropped"] == 3 and status["stale"] is False

    # A stale copy saved by a service writes only the configuration columns.
    stale_copy = Camera.objects.get(pk=camera["id"])
    worker_reports(camera["id"], frames_in=5000, state="reconnecting", last_error="timeout")
    services.camera_update(camera=stale_copy, min_face_size=60)
    fresh = Camera.objects.get(pk=camera["id"])
    assert fresh.frames_in == 5000 and fresh.state == "reconnecting" and fresh.min_face_size == 60


def test_a_patch_changing_nothing_writes_nothing(staff_client, video_root):
    camera = create(staff_client).json()
    before = Camera.objects.get().updated_at
    assert staff_client.patch(url(camera["id"]), {"name": "Lobby", "enabled": True}, format="json").status_code == 200
    assert Camera.objects.get().updated_at == before
    assert not AuditRecord.objects.filter(action="camera.update").exists()


def test_a_status_no_worker_renews_is_reported_stale(staff_client, settings, video_root):
    camera = create(staff_client).json()
    old = timezone.now() - timedelta(seconds=3 * settings.CAMERA_LEASE_SECONDS + 5)
    worker_reports(camera["id"], status_at=old)
    assert staff_client.get(url(camera["id"])).json()["status"]["stale"] is True
    worker_reports(camera["id"])
    assert staff_client.get(url(camera["id"])).json()["status"]["stale"] is False
    # A stopped camera's old status is no news: nothing claims to run it.
    worker_reports(camera["id"], state="stopped", status_at=old, lease_owner="")
    status = staff_client.get(url(camera["id"])).json()["status"]
    assert status["stale"] is False and status["worker"] is None


# ---- list filters ------------------------------------------------------------------------------

def test_list_filters_and_paginates(staff_client, user_client, video_root, gallery):
    create(staff_client, name="Front door", gallery="staff")
    create(staff_client, name="Back door", enabled=False)
    create(staff_client, name="Yard", gallery=gallery.pk)

    def names(query):
        response = user_client.get(CAMERAS + query)
        assert response.status_code == 200, response.json()
        return [c["name"] for c in response.json()["results"]]

    assert names("") == ["Back door", "Front door", "Yard"]
    assert names("?enabled=false") == ["Back door"]
    assert names("?enabled=true") == ["Front door", "Yard"]
    assert names("?gallery=staff") == names(f"?gallery={gallery.pk}") == ["Front door", "Yard"]
    assert names("?search=DOOR") == ["Back door", "Front door"]
    assert names("?search=door&enabled=1") == ["Front door"]
    page = user_client.get(CAMERAS + "?page_size=2").json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]
    unknown = user_client.get(CAMERAS + "?gallery=nope")
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "unknown_gallery"
    bad = user_client.get(CAMERAS + "?enabled=maybe")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid"
    assert user_client.get(CAMERAS + "?page=99").status_code == 404


# ---- audit and services ------------------------------------------------------------------------

def test_writes_leave_audit_records(staff_client, staff, video_root, gallery):
    camera = create(staff_client).json()
    staff_client.patch(url(camera["id"]), {"gallery": "staff", "analysis_fps": 1}, format="json")
    staff_client.delete(url(camera["id"]))
    records = list(AuditRecord.objects.filter(target_type="camera").order_by("id"))
    assert [r.action for r in records] == ["camera.create", "camera.update", "camera.delete"]
    assert all(r.actor == staff and r.target_ids == [camera["id"]] for r in records)
    assert records[1].details == {"fields": ["analysis_fps", "gallery"], "gallery_id": gallery.pk}
    assert all(SECRET not in str(r.details) and "cam1" not in str(r.details) for r in records)
    # A refused write leaves none.
    create(staff_client, name="Bad", source_url="ftp://x/")
    assert AuditRecord.objects.filter(target_type="camera").count() == 3


def test_services_refuse_what_the_api_refuses(db, video_root):
    with pytest.raises(ServiceError) as refused:
        services.camera_create(name="A", source_url="file:///etc/passwd")
    assert refused.value.error_code == "invalid_source" and refused.value.status_code == 400
    with pytest.raises(ServiceError) as refused:
        services.camera_create(name="A", source_url=RTSP, analysis_fps=float("nan"))
    assert refused.value.error_code == "invalid" and "analysis_fps" in refused.value.details
    camera = services.camera_create(name="A", source_url="file://lobby.mp4")
    with pytest.raises(ServiceError):
        services.camera_update(camera=camera, min_face_size=10)
    with pytest.raises(TypeError):
        services.camera_update(camera=camera, state="connected")  # the worker's column, never written here
    assert not AuditRecord.objects.filter(action="camera.update").exists()


# ---- admin -------------------------------------------------------------------------------------

def admin_form(**fields):
    form = {"name": "Gate", "source_url": RTSP, "gallery": "", "analysis_fps": "5", "min_face_size": "80",
            "enabled": "on"}
    form.update(fields)
    return form


def test_admin_lists_cameras_with_status(browser, video_root):
    camera = services.camera_create(name="Gate", source_url=RTSP)
    worker_reports(camera.pk)
    page = browser.get(ADMIN)
    html = page.content.decode()
    assert page.status_code == 200 and "Gate" in html and "Connected" in html and "w1" in html
    assert SECRET not in html and "admin:***@cam1.local" in html
    for query in ("?state__exact=connected", "?enabled__exact=1", "?q=gat"):
        assert "Gate" in browser.get(ADMIN + query).content.decode()
    assert browser.get(ADMIN + "add/").status_code == 200


def test_admin_add_goes_through_the_service(browser, video_root):
    refused = browser.post(ADMIN + "add/", admin_form(source_url="file:///etc/passwd"))
    assert refused.status_code == 200 and "CAMERA_FILE_ROOT" in refused.content.decode()
    refused = browser.post(ADMIN + "add/", admin_form(analysis_fps="0"))
    assert refused.status_code == 200 and "more than 0" in refused.content.decode()
    assert not Camera.objects.exists()

    added = browser.post(ADMIN + "add/", admin_form())
    assert added.status_code == 302
    camera = Camera.objects.get()
    assert camera.source_url == RTSP and camera.enabled
    record = AuditRecord.objects.get(action="camera.create")
    assert record.actor_name == "site-admin" and record.target_ids == [camera.pk]


def test_admin_change_keeps_password_and_worker_columns(browser, video_root):
    camera = services.camera_create(name="Gate", source_url=RTSP)
    reported = worker_reports(camera.pk)
    change = f"{ADMIN}{camera.pk}/change/"
    page = browser.get(change)
    html = page.content.decode()
    assert page.status_code == 200 and SECRET not in html and "admin:***@cam1.local" in html and "w1" in html

    redacted = "rtsp://admin:***@cam1.local:554/stream1"
    saved = browser.post(change, admin_form(name="Gate 2", source_url=redacted, min_face_size="60"))
    assert saved.status_code == 302
    stored = Camera.objects.get()
    assert stored.name == "Gate 2" and stored.source_url == RTSP and stored.min_face_size == 60
    for field, value in reported.items():
        assert getattr(stored, field) == value, field
    assert AuditRecord.objects.get(action="camera.update").details["fields"] == ["min_face_size", "name"]

    refused = browser.post(change, admin_form(name="Gate 2", source_url=redacted, min_face_size="5"))
    assert refused.status_code == 200 and "between 20 and 2000" in refused.content.decode()


def test_admin_delete_goes_through_the_service(browser, video_root):
    camera = services.camera_create(name="Gate", source_url=RTSP)
    response = browser.post(f"{ADMIN}{camera.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302 and not Camera.objects.exists()
    assert AuditRecord.objects.filter(action="camera.delete", target_ids=[camera.pk]).exists()


def test_admin_shows_a_write_refused_after_its_checks(browser, video_root, monkeypatch):
    # A write refused once the form's checks passed (a concurrent write took the name): a message,
    # not a server error, and nothing saved.
    camera = services.camera_create(name="Gate", source_url=RTSP)

    def refuse(**kwargs):
        raise services.refusal({"name": services.CameraFieldError("A camera named 'Gate 2' already exists.")})

    monkeypatch.setattr(services, "camera_update", refuse)
    response = browser.post(f"{ADMIN}{camera.pk}/change/", admin_form(name="Gate 2"), follow=True)
    assert response.status_code == 200 and "already exists" in response.content.decode()
    assert Camera.objects.get().name == "Gate"
