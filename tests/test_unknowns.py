"""Unknown identities: unknown faces from events and from recognitions (keep=) become sightings,
clustered into lasting unknown identities that staff name, merge, split or discard; retention and
erasure. Real photos (tests/data) through the real engine, real database, media per test."""

from __future__ import annotations

import io
import math
import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.utils import timezone
from PIL import Image

from conftest import MISC, TEST, TRAIN, upload
from core.audit.models import AuditRecord
from events.models import Event
from face_engine.live.appearances import crop_around, sharpness
from people.models import Face, Person
from people.services import person_create, person_delete
from streams.models import Camera
from tests.event_rows import T0, write_event
from unknowns.models import Sighting, UnknownCluster
from unknowns.retention import unknowns_purge
from unknowns.services import cluster_discard, cluster_merge, cluster_name, sighting_cluster, sighting_record

pytestmark = pytest.mark.django_db

UNKNOWNS = "/api/unknowns/"
OBAMA = [TRAIN / "obama" / "obama.jpg", TRAIN / "obama" / "obama2.jpg", MISC / "obama3.jpg"]
BIDEN = [TRAIN / "biden" / "biden.jpg", TRAIN / "biden" / "biden2.jpg"]
ALEX = [TRAIN / "alex_lacamoire" / "img1.jpg"]
_FACES: dict[Path, dict] = {}


@pytest.fixture(autouse=True)
def media(settings, tmp_path) -> Path:
    root = tmp_path / "media"
    settings.MEDIA_ROOT = str(root)
    return root


def face_of(engine, path: Path) -> dict:
    """The largest face of a photo as the live pipeline keeps it: embedding, JPEG crop, box, size, sharpness."""
    if path not in _FACES:
        data = path.read_bytes()
        face = engine.analyze_bytes([data])[0].largest
        out = io.BytesIO()
        Image.fromarray(crop_around(engine.decode(data), face.box)).save(out, format="JPEG", quality=90)
        _FACES[path] = {"embedding": face.embedding.astype("<f4").tobytes(), "crop_jpeg": out.getvalue(),
                        "face_box": face.box.as_dict(), "face_size": int(math.sqrt(face.box.area)),
                        "sharpness": round(sharpness(face.chip), 2)}
    return _FACES[path]


@pytest.fixture
def seen(engine, django_capture_on_commit_callbacks):
    """seen(photo, at=..., camera=...): an unknown face's appearance written as the live pipeline
    writes it (opened, then closed); the after-commit receivers run, so the closed event's
    sighting is made and clustered."""

    def write(path: Path, *, at=T0, camera: Camera | None = None) -> Event:
        values = {**face_of(engine, path), "uid": uuid.uuid4(), "kind": "unknown", "first_seen": at,
                  "named_at": at, "last_seen": at + timedelta(seconds=2),
                  "camera_id": camera.pk if camera else None, "source_name": camera.name if camera else "door"}
        with django_capture_on_commit_callbacks(execute=True):
            write_event(**values)
        with django_capture_on_commit_callbacks(execute=True):
            return write_event(**values, closed_at=at + timedelta(seconds=3))

    return write


def kept(engine, path: Path, *, at=None, person: Person | None = None) -> Sighting:
    """A sighting as a recognition with keep= makes it (unknown unless ``person``), clustered."""
    face = face_of(engine, path)
    sighting = sighting_record(embedding=np.frombuffer(face["embedding"], "<f4"),
                               crop_jpeg=face["crop_jpeg"], box=face["face_box"], face_size=face["face_size"],
                               sharpness=face["sharpness"], source_name="api:test", seen_at=at,
                               matched_person_id=person.pk if person else None)
    sighting_cluster(sighting)
    sighting.refresh_from_db()
    return sighting


def cluster_of(event: Event) -> UnknownCluster:
    return Sighting.objects.get(event=event).cluster


# ---- clustering from events -------------------------------------------------------------------

def test_unknown_events_of_one_stranger_cluster_together_and_strangers_apart(seen):
    door = Camera.objects.create(name="door", source_url="rtsp://cam/1")
    obama = [seen(p, at=T0 + timedelta(minutes=i), camera=door) for i, p in enumerate(OBAMA)]
    biden = [seen(p, at=T0 + timedelta(hours=1, minutes=i)) for i, p in enumerate(BIDEN)]
    alex = [seen(p, at=T0 + timedelta(hours=2)) for p in ALEX]
    assert Sighting.objects.count() == 6
    clusters = [{cluster_of(e).pk for e in group} for group in (obama, biden, alex)]
    assert [len(c) for c in clusters] == [1, 1, 1]  # each stranger is one cluster
    assert len(set.union(*clusters)) == 3  # and no two strangers share one
    first = cluster_of(obama[0])
    assert first.state == "open" and first.sighting_count == 3
    assert (first.first_seen, first.last_seen) == (T0, T0 + timedelta(minutes=2))
    assert first.centroid_array() is not None
    # The sighting owns a copy of the event's crop and its embedding.
    sighting = Sighting.objects.get(event=obama[0])
    assert sighting.crop.read()[:3] == b"\xff\xd8\xff" and bytes(sighting.embedding) == bytes(obama[0].embedding)
    assert sighting.crop.name != obama[0].crop.name


def test_only_closed_unknown_events_with_an_embedding_make_sightings_once(engine, seen,
                                                                         django_capture_on_commit_callbacks):
    from unknowns.services import sighting_from_event

    person = person_create(name="Known")
    face = face_of(engine, BIDEN[0])
    with django_capture_on_commit_callbacks(execute=True):
        open_event = write_event(**face, kind="unknown")  # still in view
        known = write_event(**face, person_id=person.pk, closed_at=T0 + timedelta(seconds=3))
        write_event(kind="unknown", closed_at=T0)  # no embedding
    assert not Sighting.objects.filter(event__in=[open_event, known]).exists()
    assert Sighting.objects.count() == 0
    event = seen(OBAMA[0])
    first = Sighting.objects.get(event=event)
    assert sighting_from_event(event) == first  # idempotent per event
    assert sighting_cluster(first) == first.cluster
    assert Sighting.objects.count() == 1 and first.cluster.sighting_count == 1


# ---- recognition keep= ------------------------------------------------------------------------

def test_recognition_keep_unknown_makes_clustered_sightings(user_client, engine):
    body = user_client.post("/api/faces/recognize/", {"image": upload(OBAMA[0]), "keep": "unknown"}).json()
    face = body["faces"][0]
    assert face["label"] == "unknown" and face["sighting_id"] and face["cluster"]["state"] == "open"
    sighting = Sighting.objects.get(pk=face["sighting_id"])
    assert sighting.source == "recognition" and sighting.source_name == "api:reader"
    assert sighting.crop.read()[:3] == b"\xff\xd8\xff" and sighting.box == face["box"]
    # The same stranger again joins the same cluster; keep=none (the default) keeps nothing.
    again = user_client.post("/api/faces/recognize/", {"image": upload(OBAMA[1]), "keep": "unknown"}).json()
    assert again["faces"][0]["cluster"]["id"] == face["cluster"]["id"]
    plain = user_client.post("/api/faces/recognize/", {"image": upload(OBAMA[2])}).json()
    assert "sighting_id" not in plain["faces"][0] and Sighting.objects.count() == 2
    assert UnknownCluster.objects.get(pk=face["cluster"]["id"]).sighting_count == 2


def test_recognition_keep_all_keeps_named_faces_unclustered_and_batch_keeps_too(user_client, enrolled):
    body = user_client.post("/api/faces/recognize/", {"image": upload(TEST / "obama1.jpg"), "keep": "all"}).json()
    face = body["faces"][0]
    assert face["label"] == "obama" and "cluster" not in face
    sighting = Sighting.objects.get(pk=face["sighting_id"])
    assert sighting.matched_person_id == enrolled["obama"].pk and sighting.cluster_id is None
    batch = user_client.post("/api/faces/batch-recognize/", {"images": [upload(MISC / "lin-manuel-miranda.png"),
                                                                       upload(TEST / "obama1.jpg")],
                                                            "keep": "unknown"}).json()
    stranger, known = batch["results"][0]["faces"][0], batch["results"][1]["faces"][0]
    assert stranger["label"] == "unknown" and stranger["cluster"]["id"] and stranger["sighting_id"]
    assert "sighting_id" not in known  # keep=unknown: the named face is not kept
    bad = user_client.post("/api/faces/recognize/", {"image": upload(OBAMA[0]), "keep": "some"})
    assert bad.status_code == 400 and bad.json()["error"]["details"]["keep"]


# ---- naming -----------------------------------------------------------------------------------

def test_naming_a_cluster_enrols_its_faces_and_renames_its_past_events(seen, staff_client, user_client):
    obama = [seen(p, at=T0 + timedelta(minutes=i)) for i, p in enumerate(OBAMA)]
    biden = seen(BIDEN[0])
    cluster = cluster_of(obama[0])
    answer = staff_client.post(f"{UNKNOWNS}{cluster.pk}/name/", {"name": "Barack"}, format="json")
    assert answer.status_code == 200, answer.json()
    body = answer.json()
    person = Person.objects.get(pk=body["person_id"])
    assert person.name == "Barack" and body["person_created"] and body["events"] == 3
    assert body["enrolled"] >= 1 and Face.objects.filter(person=person, status="encoded").count() == body["enrolled"]
    assert {f["sighting_id"] for f in body["faces"]} <= set(cluster.sightings.values_list("id", flat=True))
    assert body["cluster"]["state"] == "named" and body["cluster"]["person_name"] == "Barack"
    # Past events of the cluster show the new name; the other stranger's do not.
    for event in obama:
        shown = user_client.get(f"/api/events/{event.pk}/").json()
        assert (shown["person_name"], shown["kind"]) == ("Barack", "known")
    assert user_client.get(f"/api/events/{biden.pk}/").json()["person_name"] is None
    # A later recognition of that face names them.
    later = user_client.post("/api/faces/recognize/", {"image": upload(TEST / "obama1.jpg")}).json()
    assert later["faces"][0]["label"] == "Barack"
    # Named once: a second naming is a conflict, and nothing changes.
    again = staff_client.post(f"{UNKNOWNS}{cluster.pk}/name/", {"name": "Someone"}, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "cluster_named"
    assert not Person.objects.filter(name="Someone").exists()
    record = AuditRecord.objects.get(action="unknown.name")
    assert record.target_ids == [cluster.pk] and record.details["person_id"] == person.pk
    # A named cluster takes no new faces: that person is recognised now.
    assert kept_cluster_of_new_face(seen, OBAMA[0]) != cluster.pk


def kept_cluster_of_new_face(seen, path: Path) -> int | None:
    return cluster_of(seen(path, at=T0 + timedelta(days=1))).pk


def test_naming_after_an_existing_person_extends_them(engine, seen, staff_client):
    person = person_create(name="Joe")
    cluster = cluster_of(seen(BIDEN[0]))
    seen(BIDEN[1])
    body = staff_client.post(f"{UNKNOWNS}{cluster.pk}/name/", {"person": person.pk}, format="json").json()
    assert body["person_id"] == person.pk and not body["person_created"]
    assert person.faces.count() == body["enrolled"] >= 1


def test_naming_refused_for_every_face_writes_nothing(engine, staff_client):
    """A cluster whose only crop shows no face: the gate refuses it, so no person is created and the
    cluster stays open (422 with the reason per face)."""
    face = face_of(engine, OBAMA[0])
    blank = io.BytesIO()
    Image.new("RGB", (200, 200), (120, 130, 140)).save(blank, format="JPEG")
    sighting = sighting_record(embedding=np.frombuffer(face["embedding"], "<f4"), crop_jpeg=blank.getvalue(),
                               box=face["face_box"], face_size=200, sharpness=50.0, source_name="api:test")
    cluster = sighting_cluster(sighting)
    people, faces = Person.objects.count(), Face.objects.count()
    answer = staff_client.post(f"{UNKNOWNS}{cluster.pk}/name/", {"name": "Nobody"}, format="json")
    assert answer.status_code == 422, answer.json()
    error = answer.json()["error"]
    assert error["details"]["faces"][0]["sighting_id"] == sighting.pk and error["details"]["faces"][0]["error"]
    assert (Person.objects.count(), Face.objects.count()) == (people, faces)
    cluster.refresh_from_db()
    assert cluster.state == "open" and not AuditRecord.objects.filter(action="unknown.name").exists()


# ---- merge, split, discard ----------------------------------------------------------------------

def test_merge_split_and_discard(engine, staff_client, user_client, media, django_capture_on_commit_callbacks):
    obama = [kept(engine, p) for p in OBAMA]
    biden = [kept(engine, p) for p in BIDEN]
    a, b = obama[0].cluster, biden[0].cluster
    assert a.pk != b.pk
    merged = staff_client.post(f"{UNKNOWNS}{a.pk}/merge/", {"other": b.pk}, format="json")
    assert merged.status_code == 200 and merged.json()["cluster"]["sighting_count"] == 5
    assert not UnknownCluster.objects.filter(pk=b.pk).exists()
    split = staff_client.post(f"{UNKNOWNS}{a.pk}/split/", {"sightings": [s.pk for s in biden]}, format="json")
    assert split.status_code == 201
    new = UnknownCluster.objects.get(pk=split.json()["cluster"]["id"])
    assert new.sighting_count == 2 and set(new.sightings.values_list("id", flat=True)) == {s.pk for s in biden}
    a.refresh_from_db()
    assert a.sighting_count == 3 and split.json()["split_from"]["sighting_count"] == 3
    assert {r.action for r in AuditRecord.objects.filter(action__startswith="unknown.")} == {"unknown.merge",
                                                                                             "unknown.split"}
    # Discard: a tombstone without crops or embeddings; the same face seen again joins it.
    crops = [media / s.crop.name for s in biden]
    assert all(path.exists() for path in crops)
    with django_capture_on_commit_callbacks(execute=True):
        answer = staff_client.post(f"{UNKNOWNS}{new.pk}/discard/")
    assert answer.status_code == 200 and answer.json()["cluster"]["state"] == "discarded"
    assert not any(path.exists() for path in crops)
    assert not Sighting.objects.filter(cluster=new).exclude(crop="").exists()
    assert not Sighting.objects.filter(cluster=new, embedding__isnull=False).exists()
    assert user_client.get(f"{UNKNOWNS}sightings/{biden[0].pk}/crop/").status_code == 404
    open_before = UnknownCluster.objects.filter(state="open").count()
    with django_capture_on_commit_callbacks(execute=True):
        again = kept(engine, BIDEN[0])
    assert again.cluster_id == new.pk and not again.crop and again.embedding is None
    assert UnknownCluster.objects.filter(state="open").count() == open_before
    new.refresh_from_db()
    assert new.sighting_count == 3


def test_cluster_reads(engine, user_client, anon_client):
    door = Camera.objects.create(name="door", source_url="rtsp://cam/1")
    sighting = kept(engine, OBAMA[0], at=T0)
    Sighting.objects.filter(pk=sighting.pk).update(camera=door, source_name="door")
    other = kept(engine, BIDEN[0], at=T0 + timedelta(days=2))
    listed = user_client.get(UNKNOWNS).json()
    assert listed["count"] == 2 and listed["results"][0]["id"] == other.cluster_id  # last seen first
    assert [c["id"] for c in user_client.get(UNKNOWNS, {"camera": "door"}).json()["results"]] == [sighting.cluster_id]
    since = (T0 + timedelta(days=1)).isoformat()
    assert [c["id"] for c in user_client.get(UNKNOWNS, {"since": since}).json()["results"]] == [other.cluster_id]
    assert user_client.get(UNKNOWNS, {"state": "named"}).json()["count"] == 0
    detail = user_client.get(f"{UNKNOWNS}{sighting.cluster_id}/").json()
    assert detail["name"].startswith("Unknown ") and detail["sighting_count"] == 1
    assert detail["cameras"][0]["source_name"] == "door" and detail["best_sighting_ids"] == [sighting.pk]
    assert "embedding" not in detail["sightings"][0] and detail["best_crops"][0]["crop_url"]
    crop = user_client.get(detail["best_crops"][0]["crop_url"])
    assert crop.status_code == 200 and b"".join(crop.streaming_content)[:3] == b"\xff\xd8\xff"
    assert anon_client.get(detail["best_crops"][0]["crop_url"]).status_code == 401
    for params in ({"state": "gone"}, {"camera": "nowhere"}, {"since": "yesterday"}):
        answer = user_client.get(UNKNOWNS, params)
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid"
    assert user_client.get(f"{UNKNOWNS}999999/").status_code == 404
    assert user_client.get(f"{UNKNOWNS}sightings/999999/crop/").status_code == 404


def test_every_bad_input_is_a_clear_4xx_and_changes_nothing(engine, staff_client, user_client):
    a = kept(engine, OBAMA[0]).cluster
    b_sighting = kept(engine, BIDEN[0])
    b = b_sighting.cluster
    kept(engine, OBAMA[1])
    named = kept(engine, ALEX[0]).cluster
    person = person_create(name="Alex")
    cluster_name(cluster=named, person=person)
    tombstone = kept(engine, MISC / "lin-manuel-miranda.png").cluster
    cluster_discard(cluster=tombstone)

    def state() -> tuple:
        return (list(UnknownCluster.objects.order_by("id").values_list("id", "state", "sighting_count")),
                list(Sighting.objects.order_by("id").values_list("id", "cluster_id")), Person.objects.count(),
                AuditRecord.objects.filter(action__startswith="unknown.").count())

    before = state()
    cases = [
        ("name", a, {}, 400, "invalid"),
        ("name", a, {"person": person.pk, "name": "Both"}, 400, "invalid"),
        ("name", a, {"person": "abc"}, 400, "invalid"),
        ("name", a, {"person": 10**30}, 400, "invalid"),
        ("name", a, {"person": 999999}, 400, "unknown_person"),
        ("name", a, {"name": ""}, 400, "invalid"),
        ("name", a, {"name": ["x"]}, 400, "invalid"),
        ("name", a, {"person": person.pk, "galleries": []}, 400, "invalid"),
        ("name", a, {"name": "New", "galleries": ["no-such-gallery"]}, 400, "invalid"),
        ("name", a, {"name": "New", "force": "maybe"}, 400, "invalid"),
        ("name", named, {"name": "Again"}, 409, "cluster_named"),
        ("name", tombstone, {"name": "Poster"}, 409, "cluster_discarded"),
        ("merge", a, {"other": a.pk}, 400, "merge_self"),
        ("merge", a, {"other": 999999}, 400, "unknown_cluster"),
        ("merge", a, {"other": "b"}, 400, "invalid"),
        ("merge", a, {"other": True}, 400, "invalid"),
        ("merge", a, {}, 400, "invalid"),
        ("merge", a, {"other": named.pk}, 409, "cluster_named"),
        ("merge", named, {"other": a.pk}, 409, "cluster_named"),
        ("merge", a, {"other": tombstone.pk}, 409, "cluster_discarded"),
        ("split", a, {"sightings": []}, 400, "invalid"),
        ("split", a, {"sightings": [b_sighting.pk]}, 400, "not_in_cluster"),
        ("split", a, {"sightings": [999999]}, 400, "not_in_cluster"),
        ("split", a, {"sightings": list(a.sightings.values_list("id", flat=True))}, 400, "split_all"),
        ("split", a, {"sightings": "1"}, 400, "invalid"),
        ("split", a, {"sightings": ["a"]}, 400, "invalid"),
        ("split", a, {"sightings": [True]}, 400, "invalid"),
        ("split", named, {"sightings": [1]}, 409, "cluster_named"),
        ("discard", named, None, 409, "cluster_named"),
        ("discard", tombstone, None, 409, "cluster_discarded"),
    ]
    for operation, cluster, body, status, code in cases:
        answer = staff_client.post(f"{UNKNOWNS}{cluster.pk}/{operation}/", body, format="json")
        assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), (operation, body, answer.json())
    for operation in ("name", "merge", "split", "discard"):
        assert staff_client.post(f"{UNKNOWNS}999999/{operation}/", {}, format="json").status_code == 404
        assert user_client.post(f"{UNKNOWNS}{b.pk}/{operation}/", {}, format="json").status_code == 403
    not_json = staff_client.generic("POST", f"{UNKNOWNS}{a.pk}/merge/", b"{oops", content_type="application/json")
    assert not_json.status_code == 400
    assert state() == before  # nothing half-done
    with pytest.raises(Exception, match="itself"):
        cluster_merge(cluster=a, other=a)


# ---- retention and erasure ----------------------------------------------------------------------

def test_retention_purges_old_crops_and_clusters(engine, settings, media, django_capture_on_commit_callbacks):
    settings.UNKNOWN_CROP_RETENTION_DAYS, settings.UNKNOWN_CLUSTER_RETENTION_DAYS = 30, 90
    now = timezone.now()
    recent = kept(engine, OBAMA[0], at=now - timedelta(days=40))  # crop purged, cluster kept
    gone = kept(engine, BIDEN[0], at=now - timedelta(days=100))  # cluster deleted
    named = kept(engine, ALEX[0], at=now - timedelta(days=40))
    cluster_name(cluster=named.cluster, person=person_create(name="Alex"))
    fresh = kept(engine, MISC / "lin-manuel-miranda.png", at=now - timedelta(days=1))
    files = {s.pk: media / s.crop.name for s in (recent, gone, named, fresh)}
    with django_capture_on_commit_callbacks(execute=True):
        purged = unknowns_purge(now=now)
    assert (purged.sightings, purged.clusters, purged.cluster_sightings) == (1, 1, 1)
    recent.refresh_from_db()
    assert not recent.crop and recent.embedding is None and recent.cluster.sighting_count == 1
    assert not files[recent.pk].exists() and not files[gone.pk].exists()
    assert not Sighting.objects.filter(pk=gone.pk).exists()
    assert not UnknownCluster.objects.filter(pk=gone.cluster_id).exists()
    assert files[named.pk].exists() and files[fresh.pk].exists()  # a named cluster's history, and fresh ones
    call_command("purge_unknowns", stdout=io.StringIO())  # repeatable: nothing left to purge
    assert unknowns_purge(now=now).sightings == 0
    settings.UNKNOWN_CROP_RETENTION_DAYS = settings.UNKNOWN_CLUSTER_RETENTION_DAYS = 0
    assert unknowns_purge(now=now + timedelta(days=1000)) == type(purged)(0, 0, 0)


def test_a_persons_erasure_removes_their_sightings_and_named_clusters(engine, media,
                                                                      django_capture_on_commit_callbacks):
    from people.hooks import person_erasing
    from unknowns.signals import erase_person

    stranger = kept(engine, BIDEN[0])
    sightings = [kept(engine, p) for p in OBAMA[:2]]
    person = person_create(name="Barack")
    cluster_name(cluster=sightings[0].cluster, person=person)
    matched = kept(engine, OBAMA[2], person=person)  # keep=all: a face named after them
    files = [media / s.crop.name for s in (*sightings, matched)]
    nobody = person_create(name="Nobody")
    answers = dict(person_erasing.send(sender=Person, person=nobody))
    assert answers[erase_person] == {"sightings": 0, "clusters": 0}
    with django_capture_on_commit_callbacks(execute=True):
        person_delete(person=person)
    assert not Sighting.objects.filter(pk__in=[s.pk for s in (*sightings, matched)]).exists()
    assert not UnknownCluster.objects.filter(pk=sightings[0].cluster_id).exists()
    assert not any(path.exists() for path in files)
    assert Sighting.objects.filter(pk=stranger.pk).exists()  # someone else's face stays
    record = AuditRecord.objects.filter(action="person.delete").latest("id")
    assert record.details["removed"]["sightings"] == 3 and record.details["removed"]["clusters"] == 1


# ---- admin --------------------------------------------------------------------------------------

def test_admin_lists_clusters_with_crops_and_names_merges_discards(engine, browser):
    a, b = kept(engine, OBAMA[0]).cluster, kept(engine, OBAMA[1]).cluster
    if a.pk == b.pk:  # joined already: split one off to have two clusters to merge
        from unknowns.services import cluster_split

        b = cluster_split(cluster=a, sighting_ids=[a.sightings.order_by("id").last().pk])
    changelist = browser.get("/admin/unknowns/unknowncluster/")
    assert changelist.status_code == 200 and b"/api/unknowns/sightings/" in changelist.content
    assert browser.get(f"/admin/unknowns/unknowncluster/{a.pk}/change/").status_code == 200
    merged = browser.post("/admin/unknowns/unknowncluster/", {"action": "merge_clusters",
                                                             "_selected_action": [a.pk, b.pk]})
    assert merged.status_code == 302 and not UnknownCluster.objects.filter(pk=b.pk).exists()
    form = browser.post("/admin/unknowns/unknowncluster/", {"action": "name_cluster", "_selected_action": [a.pk]})
    assert form.status_code == 200 and b"Name" in form.content
    named = browser.post("/admin/unknowns/unknowncluster/", {"action": "name_cluster", "_selected_action": [a.pk],
                                                            "apply": "1", "name": "Barack"})
    assert named.status_code == 302
    a.refresh_from_db()
    assert a.state == "named" and a.person.name == "Barack" and a.person.faces.exists()
    other = kept(engine, BIDEN[0]).cluster
    browser.post("/admin/unknowns/unknowncluster/", {"action": "discard_clusters", "_selected_action": [other.pk]})
    other.refresh_from_db()
    assert other.state == "discarded"
