"""Camera workers: leases, one worker running a video file as a live camera (events, status,
crops), a camera that does not answer, and a worker killed while a person is in view (another
takes the camera over within the lease time and continues the same event). Real weights, real
videos made from the project's photos, a real database."""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from pathlib import Path

import pytest
from django.utils import timezone

from conftest import enrol_folder
from face_engine.bench.scene import OBAMA_1, Entry, build_scene
from streams.leases import camera_claim, camera_release, camera_renew, fair_share, share_out, worker_heartbeat
from streams.models import Camera, CameraWorker
from tests.processes import ROOT, Process, Processes, service_env, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
LEASE = 3.0


def camera(name: str = "door", url: str = "rtsp://127.0.0.1:1/x", **fields) -> Camera:
    return Camera.objects.create(name=name, source_url=url, **fields)


# ---- leases -------------------------------------------------------------------------------------

def test_each_camera_is_claimed_by_one_worker_and_taken_over_only_when_its_lease_expired():
    cams = [camera(f"cam{i}") for i in range(3)]
    camera("off", enabled=False)
    first = camera_claim(worker_id="w1", limit=2, lease_seconds=LEASE)
    second = camera_claim(worker_id="w2", limit=5, lease_seconds=LEASE)
    assert [c.pk for c in first] == [cams[0].pk, cams[1].pk] and [c.pk for c in second] == [cams[2].pk]
    assert camera_claim(worker_id="w3", limit=5, lease_seconds=LEASE) == []  # the disabled one is never run
    assert set(camera_renew(worker_id="w1", camera_ids=[c.pk for c in first], lease_seconds=LEASE)) == \
        {cams[0].pk, cams[1].pk}

    # w1 stops renewing (dead): once its leases expire, another worker takes them.
    Camera.objects.filter(lease_owner="w1").update(lease_expires_at=timezone.now() - dt.timedelta(seconds=1))
    taken = camera_claim(worker_id="w2", limit=5, lease_seconds=LEASE)
    assert sorted(c.pk for c in taken) == [cams[0].pk, cams[1].pk]
    assert camera_renew(worker_id="w1", camera_ids=[cams[0].pk, cams[1].pk], lease_seconds=LEASE) == {}

    # A disabled camera is no longer renewed: its worker stops it and gives it back.
    Camera.objects.filter(pk=cams[2].pk).update(enabled=False)
    held = camera_renew(worker_id="w2", camera_ids=[c.pk for c in cams], lease_seconds=LEASE)
    assert set(held) == {cams[0].pk, cams[1].pk}
    camera_release(worker_id="w2", camera_ids=[cams[2].pk])
    assert Camera.objects.get(pk=cams[2].pk).lease_owner == ""


def test_a_lease_that_expired_while_nobody_claimed_it_is_renewed_by_its_worker():
    """A worker cut off from the database keeps its cameras; once back it renews them."""
    cam = camera()
    camera_claim(worker_id="w1", limit=1, lease_seconds=LEASE)
    Camera.objects.filter(pk=cam.pk).update(lease_expires_at=timezone.now() - dt.timedelta(seconds=30))
    assert set(camera_renew(worker_id="w1", camera_ids=[cam.pk], lease_seconds=LEASE)) == {cam.pk}
    assert Camera.objects.get(pk=cam.pk).lease_expires_at > timezone.now()


def test_workers_claiming_at_the_same_moment_never_share_a_camera():
    for i in range(12):
        camera(f"cam{i}")
    claimed: dict[str, list[int]] = {}
    barrier = threading.Barrier(4)

    def claim(worker: str) -> None:
        from django.db import connection

        barrier.wait()
        try:
            claimed[worker] = [c.pk for c in camera_claim(worker_id=worker, limit=5, lease_seconds=LEASE)]
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    every = [pk for pks in claimed.values() for pk in pks]
    assert len(every) == len(set(every)) == 12
    assert {c.lease_owner for c in Camera.objects.all()} == {w for w, pks in claimed.items() if pks}


def test_cameras_are_shared_out_as_evenly_as_capacities_allow():
    assert share_out(3, {"a": 8, "b": 8}) == {"a": 2, "b": 1}
    assert share_out(7, {"a": 8, "b": 8, "c": 8}) == {"a": 3, "b": 2, "c": 2}
    assert share_out(10, {"small": 2, "large": 8}) == {"small": 2, "large": 8}  # the small one's rest
    assert share_out(3, {"standby": 0, "w": 8}) == {"standby": 0, "w": 3}
    assert share_out(20, {"a": 2, "b": 3}) == {"a": 2, "b": 3}  # more cameras than room: the rest wait
    assert share_out(0, {"a": 8}) == {"a": 0}


def test_the_fair_share_counts_the_workers_alive_and_forgets_the_silent():
    for i in range(5):
        camera(f"cam{i}")
    assert fair_share(worker_id="w1", capacity=8, lease_seconds=LEASE) == 5  # alone
    worker_heartbeat(worker_id="w1", capacity=8)
    worker_heartbeat(worker_id="w2", capacity=8)
    assert fair_share(worker_id="w1", capacity=8, lease_seconds=LEASE) == 3
    assert fair_share(worker_id="w2", capacity=8, lease_seconds=LEASE) == 2
    CameraWorker.objects.filter(name="w2").update(heartbeat_at=timezone.now() - dt.timedelta(seconds=LEASE + 1))
    assert fair_share(worker_id="w1", capacity=8, lease_seconds=LEASE) == 5  # w2 silent: not counted
    CameraWorker.objects.filter(name="w2").update(heartbeat_at=timezone.now() - dt.timedelta(seconds=11 * LEASE))
    fair_share(worker_id="w1", capacity=8, lease_seconds=LEASE)
    assert not CameraWorker.objects.filter(name="w2").exists()  # long silent: forgotten


# ---- one worker, in this process ----------------------------------------------------------------

@pytest.fixture
def videos(settings, tmp_path):
    settings.CAMERA_FILE_ROOT = str(tmp_path)
    settings.CAMERA_LEASE_SECONDS = LEASE
    settings.CAMERA_OPEN_TIMEOUT = 2.0
    settings.CAMERA_READ_TIMEOUT = 2.0
    return tmp_path


def visit_video(folder: Path) -> Path:
    """640×360, 6 s: Obama walks in at 0.5 s, stays 2.5 s, walks out; nobody for the rest."""
    path = folder / "visit.mp4"
    build_scene(path, script=[Entry(OBAMA_1, 0.5, 2.5, "left", 120, slide=0.4)], width=640, height=360, duration=6)
    return path


def present_video(folder: Path) -> Path:
    """640×360, 4 s, looped by the camera: Obama in view all the time."""
    path = folder / "present.mp4"
    build_scene(path, script=[Entry(OBAMA_1, -0.5, 60, "left", 120, slide=0.5)], width=640, height=360, duration=4)
    return path


class Running:
    """A camera worker running in a thread of this process until ``stop``."""

    def __init__(self, **kwargs) -> None:
        from streams.worker import CameraWorker

        self.worker = CameraWorker(**kwargs)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.worker.run, args=(self.stop_event,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def run_worker(until, **kwargs):
    running = Running(**kwargs)
    try:
        wait_for(until, timeout=60, what="the worker's result", interval=0.5)
    finally:
        running.stop()
    return running.worker


def test_a_worker_records_one_event_per_appearance_with_status_and_crop(engine, videos):
    from events.models import Event

    people = enrol_folder()
    cam = camera(url=f"file://{visit_video(videos)}")
    status: dict = {}

    def closed_and_status():
        row = Camera.objects.get(pk=cam.pk)
        if row.state == Camera.State.CONNECTED and row.frames_analysed > 5:
            status.update(state=row.state, fps_in=row.fps_in, fps_analysed=row.fps_analysed,
                          dropped=row.frames_dropped, last_frame_at=row.last_frame_at, worker=row.lease_owner)
        return status and Event.objects.filter(closed_at__isnull=False).exists()

    worker = run_worker(closed_and_status, worker_id="solo")
    assert status["worker"] == "solo" and 15 <= status["fps_in"] <= 35 and 3 <= status["fps_analysed"] <= 6
    assert status["dropped"] > 0 and (timezone.now() - status["last_frame_at"]).total_seconds() < 30
    [event] = Event.objects.all()
    assert event.person_id == people["obama"].pk and event.kind == "known" and event.source == "camera"
    assert event.camera_id == cam.pk and event.source_name == "door" and event.closed_at is not None
    assert event.first_seen <= event.named_at <= event.last_seen <= event.closed_at
    assert event.distance < 0.6 and 0.5 <= event.confidence <= 1 and event.frames_recognised >= 3
    assert event.crop and event.crop.read()[:3] == b"\xff\xd8\xff" and len(bytes(event.embedding)) == 512
    assert worker.writer.failures == 0
    row = Camera.objects.get(pk=cam.pk)  # stopped with the worker: lease given back
    assert row.lease_owner == "" and row.state == Camera.State.STOPPED


def test_a_camera_that_does_not_answer_reports_the_error_and_keeps_retrying(engine, videos):
    with socket.socket() as silent:  # accepts connections and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        cam = camera(url=f"http://127.0.0.1:{silent.getsockname()[1]}/video.mjpg")

        def reported():
            row = Camera.objects.get(pk=cam.pk)
            return row.state == Camera.State.RECONNECTING and "no answer" in row.last_error

        run_worker(reported, worker_id="w")


def test_a_disabled_camera_is_stopped_and_its_lease_given_back(engine, videos):
    cam = camera(url=f"file://{present_video(videos)}?loop=1")

    def stopped_after_disable():
        row = Camera.objects.get(pk=cam.pk)
        if row.state == Camera.State.CONNECTED and row.enabled:
            Camera.objects.filter(pk=cam.pk).update(enabled=False)
        return not row.enabled and row.lease_owner == "" and row.state == Camera.State.STOPPED

    run_worker(stopped_after_disable, worker_id="w")


def test_a_second_worker_takes_its_share_and_the_cameras_handed_over_keep_their_events(engine, videos):
    from events.models import Event

    people = enrol_folder()
    video = present_video(videos)
    cams = [camera(f"cam{i}", url=f"file://{video}?loop=1", analysis_fps=2) for i in range(3)]

    def owners() -> dict[str, int]:
        held: dict[str, int] = {}
        for owner in Camera.objects.values_list("lease_owner", flat=True):
            held[owner] = held.get(owner, 0) + 1
        return held

    first = Running(worker_id="w1")
    second = None
    try:
        wait_for(lambda: owners() == {"w1": 3} and Event.objects.count() == 3, timeout=90,
                 what="w1 running all three cameras, one event each", interval=0.5)
        second = Running(worker_id="w2")
        wait_for(lambda: owners() == {"w1": 2, "w2": 1}, timeout=60, what="the cameras shared 2 + 1", interval=0.5)
        handed = Camera.objects.get(lease_owner="w2")
        before = Event.objects.get(camera=handed).last_seen
        wait_for(lambda: Event.objects.get(camera=handed).last_seen > before + dt.timedelta(seconds=1), timeout=60,
                 what="the handed-over camera's event continued by w2", interval=0.5)
        time.sleep(3)
        assert owners() == {"w1": 2, "w2": 1}  # settled: no camera moves back and forth
        second.stop()
        second = None
        wait_for(lambda: owners() == {"w1": 3}, timeout=60, what="w1 taking all three back", interval=0.5)
    finally:
        for running in (second, first):
            if running is not None:
                running.stop()
    events = list(Event.objects.order_by("camera_id"))
    assert [e.camera_id for e in events] == [c.pk for c in cams]  # one appearance per camera, one event each
    assert {e.person_id for e in events} == {people["obama"].pk}
    assert not CameraWorker.objects.exists()  # both said goodbye


# ---- a worker killed: another takes over ------------------------------------------------------

def worker_process(name: str, env: dict[str, str], log_dir: Path) -> Process:
    return Process(name, [str(ROOT / ".venv" / "bin" / "python"), "manage.py", "run_cameras", "--worker-id", name],
                   env, log_dir / f"{name}.log")


@pytest.mark.slow
def test_a_killed_worker_s_camera_is_taken_over_within_the_lease_without_a_duplicate_event(settings, engine,
                                                                                            videos, tmp_path):
    from events.models import Event

    people = enrol_folder()
    cam = camera(url=f"file://{present_video(videos)}?loop=1")
    env = service_env(settings, DJANGO_SETTINGS_MODULE="config.settings.base", DEBUG="false", LOG_FORMAT="text",
                      CAMERA_FILE_ROOT=str(videos), CAMERA_LEASE_SECONDS=str(LEASE), CAMERA_OPEN_TIMEOUT="2")
    started = Processes()
    try:
        first = started.add(worker_process("worker-a", env, tmp_path))
        wait_for(lambda: Event.objects.filter(person=people["obama"]).exists(), timeout=120,
                 what="worker-a's event", detail=first.log_tail)
        second = started.add(worker_process("worker-b", env, tmp_path))
        time.sleep(5)  # worker-b is up and finds nothing free
        assert Camera.objects.get(pk=cam.pk).lease_owner == "worker-a"
        first.kill()
        killed = time.monotonic()
        wait_for(lambda: Camera.objects.get(pk=cam.pk).lease_owner == "worker-b", timeout=LEASE + 30,
                 what="worker-b taking the camera over", detail=second.log_tail)
        taken = time.monotonic() - killed
        before = Event.objects.get().last_seen
        wait_for(lambda: Event.objects.get().last_seen > before + dt.timedelta(seconds=2), timeout=60,
                 what="the same event continued by worker-b", detail=second.log_tail)
        second.stop()
        [event] = Event.objects.all()  # one appearance, one event: continued, not duplicated
        assert event.person_id == people["obama"].pk and event.closed_at is not None
        print(f"camera taken over {taken:.1f} s after the kill (lease {LEASE:.0f} s)")
        assert taken <= LEASE + 10
    finally:
        started.stop_all()


def test_the_worker_command_refuses_a_negative_capacity():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "manage.py", "run_cameras", "--capacity", "-1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env=service_env(
                              DJANGO_SETTINGS_MODULE="config.settings.base", DEBUG="false"))
    assert done.returncode == 2 and "--capacity must be 0 or more" in done.stderr
