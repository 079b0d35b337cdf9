"""A camera worker (``manage.py run_cameras``): claims cameras through leases, reads each with a
reader thread, analyses them all in one loop thread, and writes their events from a writer thread.

The main thread is the heartbeat: every ``heartbeat`` seconds it renews the leases, stops the
cameras it lost (disabled, deleted, taken by another worker after this one was cut off), restarts
those whose configuration changed, writes their live status and claims more up to its capacity.
A database outage only skips heartbeats: cameras keep being read and analysed, and their events
wait in the writer until the database is back.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import socket
import threading
import time

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection

from core.prometheus import CameraFrames
from face_engine.live.appearances import AppearanceTracker
from face_engine.live.frames import LatestFrame
from face_engine.live.loop import LiveLoop, Stream
from face_engine.live.source_url import SourceError, parse_source
from face_engine.live.sources import VideoSource
from face_engine.types import BoundingBox
from people.engine import pipeline
from streams.leases import (
    camera_claim,
    camera_release,
    camera_renew,
    camera_status_write,
    fair_share,
    others_alive,
    worker_heartbeat,
    worker_leave,
)
from streams.matching import gallery_matcher, index_refresh, live_policy
from streams.models import Camera
from streams.sink import EventWriter, SourceContext, reset_connection

logger = logging.getLogger(__name__)
PURGE_EVERY = 3600.0  # seconds between two passes of the event crops' retention


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class CameraRunner:
    """One claimed camera: its reader and its stream in the analysis loop."""

    def __init__(self, camera: Camera, *, loop: LiveLoop, writer: EventWriter) -> None:
        self.camera_id, self.name, self.config_at = camera.pk, camera.name, camera.updated_at
        self.loop = loop
        self.slot = LatestFrame()
        self.frames = CameraFrames(camera.name)  # this runner's counts start at 0: so do its deltas
        self.error = ""
        self.source: VideoSource | None = None
        try:
            spec = parse_source(camera.source_url, file_root=settings.CAMERA_FILE_ROOT)
        except SourceError as exc:  # valid when saved; its file may have gone since
            self.error = exc.message
            return
        self.source = VideoSource(spec, self.slot, open_timeout=settings.CAMERA_OPEN_TIMEOUT,
                                  read_timeout=settings.CAMERA_READ_TIMEOUT,
                                  reconnect_max=settings.CAMERA_RECONNECT_MAX_SECONDS, name=camera.name)
        context = SourceContext(source="camera", source_name=camera.name, camera_id=camera.pk,
                                gallery_id=camera.gallery_id)
        appearances = AppearanceTracker(match=gallery_matcher(camera.gallery_id), policy=live_policy(),
                                        emit=lambda event: writer.put(event, context))
        self.stream = Stream(key=camera.pk, slot=self.slot, appearances=appearances, fps=camera.analysis_fps,
                             min_face_size=camera.min_face_size)
        adopt_open_events(appearances, camera.pk)

    def start(self) -> None:
        if self.source is not None:
            self.loop.add(self.stream)
            self.source.start()

    def stop(self, *, handover: bool = False) -> None:
        """Stop reading and analysing; the camera's appearances are closed, or, when it is handed
        over to another worker, left open in the database for that worker to continue."""
        if self.source is not None:
            self.source.stop()
            self.loop.remove(self.camera_id, close=not handover)

    def status(self) -> dict:
        if self.source is None:
            return {"state": Camera.State.RECONNECTING, "last_error": self.error}
        source = self.source.status()
        state = {"connected": Camera.State.CONNECTED, "connecting": Camera.State.CONNECTING,
                 "reconnecting": Camera.State.RECONNECTING}.get(source.state, Camera.State.STOPPED)
        last = source.last_frame_at
        return {
            "state": state, "last_error": source.last_error[:1000], "fps_in": round(source.fps_in, 2),
            "fps_analysed": round(self.stream.fps_analysed, 2), "frames_in": source.frames_in,
            "frames_analysed": self.stream.analysed, "frames_dropped": self.slot.dropped,
            "last_frame_at": None if last is None else dt.datetime.fromtimestamp(last, tz=dt.UTC),
        }


def adopt_open_events(appearances: AppearanceTracker, camera_id: int) -> None:
    """Events of this camera left open by a worker that stopped without closing them (killed):
    the face still in view continues its event; the others are closed when nobody comes back."""
    import numpy as np

    from events.models import Event

    linger_until = time.time() + settings.CAMERA_LEASE_SECONDS + settings.CAMERA_OPEN_TIMEOUT
    for event in Event.objects.filter(camera_id=camera_id, closed_at__isnull=True, embedding__isnull=False):
        box = event.face_box or {}
        appearances.adopt(
            uid=event.uid, person_id=event.person_id, embedding=np.frombuffer(bytes(event.embedding), dtype="<f4"),
            box=BoundingBox(**{k: int(box.get(k, 0)) for k in ("top", "right", "bottom", "left")}),
            first_seen=event.first_seen.timestamp(), named_at=event.named_at.timestamp(),
            last_seen=event.last_seen.timestamp(), frames_seen=event.frames_seen,
            frames_recognised=event.frames_recognised, distance=event.distance, size=event.face_size,
            sharpness=event.sharpness, linger_until=linger_until)


def _closing_connection(run):
    """A thread's target that gives its database connection back when it ends."""

    def target() -> None:
        try:
            run()
        finally:
            connection.close()

    return target


class CameraWorker:
    def __init__(self, *, worker_id: str | None = None, capacity: int | None = None,
                 lease_seconds: float | None = None) -> None:
        self.worker_id = worker_id or worker_name()
        self.capacity = capacity if capacity is not None else settings.CAMERA_WORKER_CAPACITY
        self.lease_seconds = lease_seconds or settings.CAMERA_LEASE_SECONDS
        self.heartbeat = min(2.0, self.lease_seconds / 3.0)
        self.writer = EventWriter()
        # On PostgreSQL each thread's connection comes from the process's pool: the loop's (its
        # matchers read the index version) goes back after each batch.
        self.loop = LiveLoop(pipeline(), after_batch=close_old_connections)
        self.runners: dict[int, CameraRunner] = {}
        self._last_purge = 0.0

    def run(self, stop: threading.Event) -> None:
        logger.info("camera worker %s: loading the models", self.worker_id)
        pipeline().load()
        self.writer.start()
        analysis = threading.Thread(target=_closing_connection(self.loop.run), name="live-loop", daemon=True)
        analysis.start()
        logger.info("camera worker %s: running (capacity %d, lease %.0f s)", self.worker_id, self.capacity,
                    self.lease_seconds)
        try:
            while not stop.is_set():
                self.beat()
                stop.wait(self.heartbeat)
        finally:
            self.shutdown()
            self.loop.stop()
            analysis.join(5.0)
            connection.close()

    def beat(self) -> None:
        try:
            self._beat()
            close_old_connections()  # back to the pool between beats (PostgreSQL): the loop and writer need it
        except DatabaseError as exc:
            logger.warning("camera worker %s: database unavailable (%s); cameras keep running", self.worker_id,
                           str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__)
            reset_connection()

    def _beat(self) -> None:
        index_refresh()  # first: while it fails, the cameras match against the index in memory
        worker_heartbeat(worker_id=self.worker_id, capacity=self.capacity)
        held = camera_renew(worker_id=self.worker_id, camera_ids=list(self.runners), lease_seconds=self.lease_seconds)
        gone = [cid for cid in self.runners if cid not in held]
        for camera_id in gone:
            logger.info("camera %s: stopped here (disabled, deleted or taken over)", self.runners[camera_id].name)
            self.runners.pop(camera_id).stop()
        camera_release(worker_id=self.worker_id, camera_ids=gone)
        for camera_id, config_at in held.items():
            if self.runners[camera_id].config_at != config_at:
                logger.info("camera %s: configuration changed, restarting", self.runners[camera_id].name)
                self.runners.pop(camera_id).stop()
                self.writer.flush(timeout=2.0)  # its closing events first: the new runner must not adopt them
                camera = Camera.objects.filter(pk=camera_id).first()
                if camera is not None:
                    self._start(camera)
        for camera_id, runner in self.runners.items():
            status = runner.status()
            camera_status_write(worker_id=self.worker_id, camera_id=camera_id, **status)
            runner.frames.record(status)  # the Prometheus counters move with the status written
        target = min(self.capacity, fair_share(worker_id=self.worker_id, capacity=self.capacity,
                                                lease_seconds=self.lease_seconds))
        extra = sorted(self.runners)[target:]  # another worker came: it takes these over
        for camera_id in extra:
            logger.info("camera %s: handed over (%d cameras here, fair share %d)", self.runners[camera_id].name,
                        len(self.runners), target)
            self.runners.pop(camera_id).stop(handover=True)
        camera_release(worker_id=self.worker_id, camera_ids=extra)
        for camera in camera_claim(worker_id=self.worker_id, limit=target - len(self.runners),
                                   lease_seconds=self.lease_seconds):
            logger.info("camera %s: claimed by %s", camera.name, self.worker_id)
            self._start(camera)
        if time.monotonic() - self._last_purge >= PURGE_EVERY:
            from events.services import event_crops_purge

            self._last_purge = time.monotonic()
            purged = event_crops_purge()
            if purged:
                logger.info("retention: the crops of %d events deleted", purged)
            from unknowns.retention import unknowns_purge

            unknown = unknowns_purge()
            if unknown.sightings or unknown.clusters:
                logger.info("retention: %d unknown sightings' crops and %d unknown clusters deleted",
                            unknown.sightings, unknown.clusters)
            from core.index.log import index_log_compact

            compacted = index_log_compact()["index_changes"]
            if compacted:
                logger.info("retention: %d changes of the index log compacted", compacted)

    def _start(self, camera: Camera) -> None:
        runner = CameraRunner(camera, loop=self.loop, writer=self.writer)
        self.runners[camera.pk] = runner
        runner.start()

    def shutdown(self) -> None:
        """Stop every camera, write what is pending, give the leases back. With other workers
        alive the cameras are handed over (their open events continued there, not closed and
        opened again); the last worker closes them."""
        try:
            handover = others_alive(worker_id=self.worker_id, lease_seconds=self.lease_seconds)
        except DatabaseError:
            handover = False
        for runner in self.runners.values():
            runner.stop(handover=handover)
        self.writer.stop(timeout=10.0)
        try:
            camera_release(worker_id=self.worker_id, camera_ids=list(self.runners))
            worker_leave(worker_id=self.worker_id)
        except DatabaseError:
            logger.warning("camera worker %s: leases not released (database unavailable); they expire",
                           self.worker_id)
        self.runners.clear()
