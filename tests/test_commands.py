"""Management commands: enroll_folder, recognize, ensure_dev_superuser. Real photos, real weights."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.core.management import CommandError, call_command
from PIL import Image
from rest_framework.test import APIClient

from conftest import MISC, TEST, TRAIN, upload
from people.management.commands.enroll_folder import display_name
from people.models import Face, Gallery, Person
from people.services import face_enroll, person_create
from recognition.services import RecognizeOptions, recognize_images

NOT_AN_IMAGE = "The file is not an image that can be decoded."


# ---- helpers ---------------------------------------------------------------------------------

def run(*args) -> str:
    """Run a command as manage.py would; returns what it printed on stdout."""
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue()


def enrol(name: str, *photos: Path, galleries=()) -> Person:
    person = person_create(name=name, galleries=galleries)
    outcomes = face_enroll(person=person, uploads=[upload(p) for p in photos])
    assert [o.error for o in outcomes] == [None] * len(photos)
    return person


def names_in(photo: Path, gallery: Gallery | None = None) -> list[str]:
    [result] = recognize_images([photo.read_bytes()], RecognizeOptions(gallery=gallery))
    return sorted(face["label"] for face in result["faces"])


def media_files() -> set[Path]:
    return {p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()}


def text_file(path: Path, text: str = "not a photo\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def copy(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def plain_image(path: Path) -> Path:
    """A real PNG with no face in it: a flat grey square."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (320, 240), (128, 128, 128)).save(path)
    return path


# ---- enroll_folder ---------------------------------------------------------------------------

def test_enroll_folder_enrols_everyone_into_a_new_gallery_once(engine, db):
    assert not Gallery.objects.filter(slug="class-a").exists()

    output = run("enroll_folder", str(TRAIN), "--gallery", "class-a")

    assert ("Enrolled 9 photo(s) of 5 people into gallery 'class-a'; "
            "0 already enrolled; 0 refused.") in output
    gallery = Gallery.objects.get(slug="class-a")
    assert sorted(gallery.people.values_list("name", flat=True)) == [
        "Alex Lacamoire", "Biden", "Kit Harington", "Obama", "Rose Leslie"]
    faces = list(Face.objects.all())
    assert len(faces) == 9
    assert {f.status for f in faces} == {Face.Status.ENCODED}
    assert all(Path(f.image.path).is_file() and len(bytes(f.embedding)) == 512 for f in faces)
    assert names_in(TEST / "obama1.jpg", gallery) == ["Obama"]

    again = run("enroll_folder", str(TRAIN), "--gallery", "class-a")

    assert ("Enrolled 0 photo(s) of 5 people into gallery 'class-a'; "
            "9 already enrolled; 0 refused.") in again
    assert Face.objects.count() == 9 and Person.objects.count() == 5 and Gallery.objects.count() == 1


def test_enroll_folder_refuses_bad_photos_and_keeps_nothing_for_them(engine, db, tmp_path):
    copy(TRAIN / "kit_harington" / "john2.jpeg", tmp_path / "kit_harington" / "john2.jpeg")
    text_file(tmp_path / "kit_harington" / "x.jpg")
    plain_image(tmp_path / "kit_harington" / "grey.png")
    copy(MISC / "two_people.jpg", tmp_path / "kit_harington" / "group.jpg")
    text_file(tmp_path / "kit_harington" / "notes.txt")  # not a photo by its name: skipped silently
    plain_image(tmp_path / "nobody" / "grey.png")
    before = media_files()

    output = run("enroll_folder", str(tmp_path))

    assert "Enrolled 1 photo(s) of 1 people; 0 already enrolled; 4 refused." in output
    assert f"refused kit_harington/x.jpg: {NOT_AN_IMAGE}" in output
    assert "refused kit_harington/grey.png: No face was found in the photo." in output
    assert "refused kit_harington/group.jpg: 2 faces were found in the photo" in output
    assert "refused nobody/grey.png: No face was found in the photo." in output
    assert "notes.txt" not in output
    # Only the good photo is kept: one face, its photo and thumbnail; nobody gets no person at all.
    [kit] = Person.objects.all()
    assert kit.name == "Kit Harington"
    [face] = Face.objects.all()
    assert face.person == kit and face.status == Face.Status.ENCODED
    assert media_files() - before == {Path(face.image.path), Path(face.thumbnail.path)}


def test_enroll_folder_largest_enrols_the_biggest_face_of_a_group_photo(engine, db, tmp_path):
    copy(MISC / "two_people.jpg", tmp_path / "group" / "group.jpg")
    output = run("enroll_folder", str(tmp_path), "--largest")
    assert "Enrolled 1 photo(s) of 1 people; 0 already enrolled; 0 refused." in output
    [face] = Face.objects.all()
    [result] = engine.analyze_bytes([(MISC / "two_people.jpg").read_bytes()])
    assert face.box == result.largest.box.as_dict()


def test_enroll_folder_into_a_gallery_later_makes_people_findable_there(engine, db, tmp_path):
    copy(TRAIN / "obama" / "obama.jpg", tmp_path / "obama" / "obama.jpg")
    run("enroll_folder", str(tmp_path))
    assert names_in(TEST / "obama1.jpg") == ["Obama"]  # the index is built and cached

    output = run("enroll_folder", str(tmp_path), "--gallery", "door-1")

    assert "Enrolled 0 photo(s) of 1 people into gallery 'door-1'; 1 already enrolled" in output
    assert names_in(TEST / "obama1.jpg", Gallery.objects.get(slug="door-1")) == ["Obama"]


@pytest.mark.parametrize("folder,name", [
    ("kit_harington", "Kit Harington"),
    ("rose leslie", "Rose Leslie"),
    ("Ronan_McDonald", "Ronan McDonald"),  # capitals already there are kept
    ("le_Bon", "Le Bon"),
])
def test_folder_names_become_display_names(folder, name):
    assert display_name(folder) == name


@pytest.mark.django_db
def test_enroll_folder_refuses_what_is_not_a_folder_of_photos(tmp_path):
    with pytest.raises(CommandError, match="is not a directory"):
        run("enroll_folder", str(tmp_path / "missing"))
    text_file(tmp_path / "someone" / "notes.txt")
    with pytest.raises(CommandError, match="No photos found"):
        run("enroll_folder", str(tmp_path))
    copy(TRAIN / "obama" / "obama.jpg", tmp_path / "obama" / "obama.jpg")
    with pytest.raises(CommandError, match="not a slug"):
        run("enroll_folder", str(tmp_path), "--gallery", "Class A")
    assert not Person.objects.exists() and not Gallery.objects.exists()


# ---- recognize -------------------------------------------------------------------------------

@pytest.fixture
def obama_and_biden(engine, db):
    return {"obama": enrol("obama", TRAIN / "obama" / "obama.jpg"),
            "biden": enrol("biden", TRAIN / "biden" / "biden.jpg")}


def recognize_json(*args) -> list[dict]:
    return json.loads(run("recognize", *map(str, args), "--json"))


def test_recognize_json_names_obama_biden_and_a_stranger(obama_and_biden):
    photo = TEST / "obama_and_biden.jpg"
    [entry] = recognize_json(photo)

    assert entry["file"] == str(photo) and entry["success"] is True
    faces = sorted(entry["faces"], key=lambda f: f["name"])
    assert [f["name"] for f in faces] == ["biden", "obama", "unknown"]
    for face in faces:
        box = face["box"]
        assert 0 <= box["left"] < box["right"] <= 2000 and 0 <= box["top"] < box["bottom"] <= 1428
    biden, obama, stranger = faces
    assert biden["person_id"] == obama_and_biden["biden"].pk and biden["distance"] < 0.6
    assert obama["person_id"] == obama_and_biden["obama"].pk and obama["distance"] < 0.6
    assert stranger["person_id"] is None and stranger["distance"] is None


def test_recognize_text_prints_names_and_boxes(obama_and_biden):
    photo = TEST / "obama_and_biden.jpg"
    lines = run("recognize", str(photo)).splitlines()

    assert lines[0] == f"{photo}: 3 face(s)"
    pattern = re.compile(r"  (\w+)(?: \(distance (0\.\d{3})\))?"
                         r" at top=(\d+) right=(\d+) bottom=(\d+) left=(\d+)")
    rows = [pattern.fullmatch(line) for line in lines[1:]]
    assert all(rows), lines
    named = {m[1]: m for m in rows}
    assert sorted(named) == ["biden", "obama", "unknown"]
    assert named["unknown"][2] is None and float(named["obama"][2]) < 0.6
    for m in rows:
        top, right, bottom, left = map(int, m.groups()[2:])
        assert top < bottom and left < right


def test_recognize_searches_only_the_gallery_asked_for(obama_and_biden):
    only_biden = Gallery.objects.create(name="Biden only", slug="biden-only")
    only_biden.people.add(obama_and_biden["biden"])
    photo = TEST / "obama1.jpg"

    [by_slug] = recognize_json(photo, "--gallery", "biden-only")
    assert [f["name"] for f in by_slug["faces"]] == ["unknown"]
    [everyone] = recognize_json(photo)
    assert [f["name"] for f in everyone["faces"]] == ["obama"]
    with pytest.raises(CommandError, match="No gallery with id or slug 'nope'"):
        run("recognize", str(photo), "--gallery", "nope")


def test_recognize_reports_a_bad_file_as_an_error_entry(obama_and_biden, tmp_path):
    bad = text_file(tmp_path / "x.jpg")
    good = TEST / "obama1.jpg"

    report = recognize_json(bad, good)

    assert report[0] == {"file": str(bad), "success": False,
                         "error": {"code": "not_an_image", "message": NOT_AN_IMAGE}}
    assert report[1]["success"] is True and [f["name"] for f in report[1]["faces"]] == ["obama"]
    assert run("recognize", str(bad)).strip() == f"{bad}: error: {NOT_AN_IMAGE}"


@pytest.mark.django_db
def test_recognize_refuses_a_missing_file(tmp_path):
    with pytest.raises(CommandError, match="no such file"):
        run("recognize", str(tmp_path / "missing.jpg"))
    with pytest.raises(CommandError, match="no such file"):
        run("recognize", str(tmp_path))  # a directory is not a photo


# ---- ensure_dev_superuser --------------------------------------------------------------------

def credentials(output: str) -> dict[str, str]:
    return dict(re.findall(r"^  (username|password|token): +(\S+)$", output, re.MULTILINE))


@pytest.mark.django_db
def test_ensure_dev_superuser_creates_a_working_login_once():
    output = run("ensure_dev_superuser")

    shown = credentials(output)
    assert set(shown) == {"username", "password", "token"} and shown["username"] == "admin"
    user = get_user_model().objects.get(username="admin")
    assert user.is_superuser and user.is_staff and user.check_password(shown["password"])
    response = APIClient().post("/api/auth/token/", {"username": "admin", "password": shown["password"]},
                                format="json")
    assert response.status_code == 200 and response.json()["token"] == shown["token"]
    with_token = APIClient()
    with_token.credentials(HTTP_AUTHORIZATION=f"Bearer {shown['token']}")
    assert with_token.get("/api/people/").status_code == 200

    again = run("ensure_dev_superuser")

    assert "already exists" in again
    assert credentials(again) == {} and shown["password"] not in again and shown["token"] not in again
    user.refresh_from_db()
    assert user.check_password(shown["password"])  # unchanged
    assert get_user_model().objects.count() == 1


@pytest.mark.django_db
def test_ensure_dev_superuser_takes_another_username():
    shown = credentials(run("ensure_dev_superuser", "--username", "dev"))
    assert shown["username"] == "dev"
    assert authenticate(username="dev", password=shown["password"]) is not None
