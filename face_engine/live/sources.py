"""Readers of camera streams and video files: one thread per source puts every decoded frame into a
``LatestFrame`` slot, reconnecting on its own whatever goes wrong.

RTSP (over TCP, or UDP for servers that refuse TCP), HTTP MJPEG (FFmpeg's mpjpeg demuxer, which it
probes on its own) and video files, played at their own frame rate like a live camera. Frames are
handed over undecoded to RGB: only the ones the analyser takes are converted.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from functools import partial

import av
import av.error
from av.container import InputContainer
from av.video.frame import VideoFrame

from face_engine.live.frames import Frame, LatestFrame
from face_engine.live.source_url import SourceSpec, redact
from face_engine.types import RGBImage

log = logging.getLogger("face_engine.live.sources")

FPS_WINDOW = 2.0  # seconds of arrivals behind status().fps_in
# Two threads, slice or frame: 720p H.264 costs ~2 ms a frame on one core, so more threads buy
# nothing for a 25 fps camera but cost CPU on a machine that also runs the networks.
DECODE_THREADS = 2
END_OF_FILE = "end of the video file"
_MAX_ERROR = 300
_PASSWORD = re.compile(r"(://[^/\s:@]*):[^/\s@]*@")


@dataclass(frozen=True)
class SourceStatus:
    state: str  # "connecting" | "connected" | "reconnecting" | "stopped"
    last_error: str  # "" or a one-line message, passwords redacted
    frames_in: int  # frames read since start (all connections)
    fps_in: float  # frames/s over about the last FPS_WINDOW seconds
    last_frame_at: float | None  # time.time() of the last frame
    reconnects: int
    ended: bool = False  # a file without loop reached its end


class _Stopped(Exception):
    """stop() was asked for: unwinds the reader out of any depth."""


class _Ended(Exception):
    """A video file without loop played to its end."""


class _Failure(Exception):
    """A failure already worded for people (the cause, if any, is chained)."""


class _Pacer:
    """Places a file's frames on a wall clock: frame at ``pts`` is due ``pts`` seconds after the
    first, and each loop continues the timeline where the previous one ended."""

    def __init__(self, interval: float) -> None:
        self.origin = time.monotonic()
        self.offset = 0.0  # seconds played by the previous loops
        self.interval = interval  # one frame's duration, to place the first frame of the next loop
        self._first: float | None = None
        self._last = 0.0

    def place(self, frame: VideoFrame) -> tuple[float, float]:
        """(the frame's pts on the source's timeline, the monotonic time it is due)."""
        t = frame.time
        if self._first is None:
            self._first = 0.0 if t is None else t
            rel = 0.0
        elif t is None:  # no timestamp: a steady rate after the previous frame
            rel = self._last + self.interval
        else:
            rel = max(t - self._first, 0.0)
        if rel > self._last:
            self._last = rel
        pts = self.offset + rel
        return pts, self.origin + pts

    def next_loop(self) -> None:
        self.offset += self._last + self.interval
        self._first = None
        self._last = 0.0


def _rgb(frame: VideoFrame) -> RGBImage:
    image: RGBImage = frame.to_ndarray(format="rgb24")  # type: ignore[assignment]  # rgb24 is uint8
    return image


class VideoSource:
    """Reads one source in a daemon thread until stop(); status() is safe from any thread."""

    def __init__(self, spec: SourceSpec, slot: LatestFrame, *, open_timeout: float = 10.0, read_timeout: float = 5.0,
                 reconnect_min: float = 0.5, reconnect_max: float = 30.0, name: str = "") -> None:
        self._spec = spec
        self._slot = slot
        self._open_timeout = open_timeout
        self._read_timeout = read_timeout
        self._reconnect_min = reconnect_min
        self._reconnect_max = max(reconnect_max, reconnect_min)
        self.name = name or spec.display or redact(spec.url)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._state = "stopped"
        self._last_error = ""
        self._frames_in = 0
        self._arrivals: deque[float] = deque()
        self._last_frame_at: float | None = None
        self._reconnects = 0
        self._ended = False
        self._seq = 0  # never reset: the slot only hands over frames newer than the last taken
        self._started_mono = time.monotonic()
        self._streak_mono = self._started_mono  # the current connection's first frame

    # -- control ---------------------------------------------------------------------------------

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"video source {self.name} is already running")
        self._stop.clear()
        with self._lock:
            self._state = "connecting"
            self._last_error = ""
            self._frames_in = 0
            self._arrivals.clear()
            self._reconnects = 0
            self._ended = False
            self._started_mono = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"video-source {self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the reader to end and wait up to ``timeout`` s. A reader blocked inside FFmpeg ends
        when the open or read timeout interrupts it; the slot stays open (the caller owns it)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def status(self) -> SourceStatus:
        now = time.monotonic()
        with self._lock:
            self._prune(now)
            # Over the window, or since this connection's first frame when that is more recent; at
            # least half a second, so that the first two frames do not read as 1000 fps.
            span = max(min(FPS_WINDOW, now - self._streak_mono), 0.5)
            fps = len(self._arrivals) / span
            return SourceStatus(state=self._state, last_error=self._last_error, frames_in=self._frames_in,
                                fps_in=round(fps, 2), last_frame_at=self._last_frame_at,
                                reconnects=self._reconnects, ended=self._ended)

    # -- the reader thread -----------------------------------------------------------------------

    def _run(self) -> None:
        delay = self._reconnect_min
        try:
            while not self._stop.is_set():
                frames_before = self._frames_in
                try:
                    self._session()
                    message = "the stream ended"
                except _Stopped:
                    return
                except _Ended:
                    with self._lock:
                        self._ended = True
                        self._last_error = END_OF_FILE
                    log.info("%s: %s", self.name, END_OF_FILE)
                    return
                except Exception as exc:  # the reader must outlive anything PyAV or the OS raises
                    message = self._describe(exc)
                if self._stop.is_set():
                    return
                if self._frames_in > frames_before:  # it worked for a while: retry soon
                    delay = self._reconnect_min
                log.warning("%s: %s; reconnecting in %.1f s", self.name, message, delay)
                with self._lock:
                    self._state = "reconnecting"
                    self._last_error = message
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, self._reconnect_max)
                with self._lock:
                    self._reconnects += 1
        finally:
            with self._lock:
                self._state = "stopped"

    def _session(self) -> None:
        """One connection; for a file, every loop of it. Returns when a network stream ends."""
        if self._spec.kind != "file":
            container = self._open()
            try:
                self._pump(container, None)
            finally:
                _close(container)
            return
        pacer: _Pacer | None = None
        while True:
            container = self._open()
            try:
                if pacer is None:
                    rate = container.streams.video[0].average_rate if container.streams.video else None
                    pacer = _Pacer(1.0 / float(rate) if rate else 0.04)
                frames = self._pump(container, pacer)
            finally:
                _close(container)
            if frames == 0:  # looping a file with nothing to show would spin
                raise _Failure("the video file has no decodable frames")
            if not self._spec.loop:
                raise _Ended
            pacer.next_loop()

    def _open(self) -> InputContainer:
        if self._stop.is_set():
            raise _Stopped
        if self._spec.kind != "rtsp":
            return self._open_with({})
        try:
            return self._open_with({"rtsp_transport": "tcp"})
        except _Failure as failure:
            # Some servers (rtsp-server-perl among them) answer 400/461 to RTP over the RTSP
            # connection; they serve UDP. Only a quick refusal is retried, never a timeout.
            refused = (av.error.HTTPBadRequestError, av.error.HTTPOtherClientError)
            if not isinstance(failure.__cause__, refused) or self._stop.is_set():
                raise
            log.info("%s: RTSP over TCP refused (%s); trying UDP", self.name, self._describe(failure))
            return self._open_with({"rtsp_transport": "udp"})

    def _open_with(self, options: dict[str, str]) -> InputContainer:
        started = time.monotonic()
        try:
            container = av.open(self._spec.url, timeout=(self._open_timeout, self._read_timeout), options=options)
        except Exception as exc:
            # FFmpeg words an interrupted open variously (Immediate exit, Invalid data…): say it plainly.
            if time.monotonic() - started >= self._open_timeout * 0.95:
                raise _Failure(f"no answer within {self._open_timeout:g} s (open timeout)") from exc
            raise _Failure(f"open failed: {_reason(exc)}") from exc
        if not isinstance(container, InputContainer):  # pragma: no cover - mode "r" always gives one
            container.close()
            raise _Failure("open failed: not an input")
        return container

    def _pump(self, container: InputContainer, pacer: _Pacer | None) -> int:
        """Demux and decode until the stream ends; the number of frames put."""
        if not container.streams.video:
            raise _Failure("the source has no video stream")
        stream = container.streams.video[0]
        stream.codec_context.thread_count = DECODE_THREADS
        stream.codec_context.thread_type = "AUTO"
        frames = 0
        progress = time.monotonic()
        try:
            # Every stream is demuxed so the watchdog also sees a source sending only audio or garbage.
            for packet in container.demux():
                if self._stop.is_set():
                    raise _Stopped
                if packet.stream_index == stream.index:
                    try:
                        decoded = stream.decode(packet)
                    except av.error.InvalidDataError as exc:  # one damaged frame: the next may decode
                        log.debug("%s: undecodable packet: %s", self.name, _reason(exc))
                        decoded = []
                    for frame in decoded:
                        self._deliver(frame, pacer)
                        frames += 1
                        progress = time.monotonic()
                if pacer is None and time.monotonic() - progress > self._read_timeout:
                    raise _Failure(f"no frame for {self._read_timeout:g} s")
        except av.error.ExitError as exc:  # PyAV's read timeout interrupted a blocked read
            raise _Failure(f"no data for {self._read_timeout:g} s (read timeout)") from exc
        except (_Stopped, _Failure):
            raise
        except Exception as exc:
            raise _Failure(f"read failed: {_reason(exc)}") from exc
        return frames

    def _deliver(self, frame: VideoFrame, pacer: _Pacer | None) -> None:
        if pacer is not None:
            pts, due = pacer.place(frame)
            wait = due - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                raise _Stopped
        else:
            pts = time.monotonic() - self._started_mono
        received_mono = time.monotonic()
        received_at = time.time()
        self._seq += 1
        self._slot.put(Frame(seq=self._seq, pts=pts, received_at=received_at, received_mono=received_mono,
                             _convert=partial(_rgb, frame)))
        with self._lock:
            if self._state != "connected":
                self._streak_mono = received_mono
                self._state = "connected"
            self._frames_in += 1
            self._last_frame_at = received_at
            self._arrivals.append(received_mono)
            self._prune(received_mono)

    def _prune(self, now: float) -> None:
        while self._arrivals and self._arrivals[0] < now - FPS_WINDOW:
            self._arrivals.popleft()

    def _describe(self, exc: BaseException) -> str:
        text = str(exc) if isinstance(exc, _Failure) else f"unexpected error: {_reason(exc)}"
        text = text.replace(self._spec.url, self._spec.display or redact(self._spec.url))
        text = _PASSWORD.sub(r"\1:***@", " ".join(text.split()))
        return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 1] + "…"


def _reason(exc: BaseException) -> str:
    """An exception in a few words, without the URL FFmpeg appends (it may carry a password)."""
    if isinstance(exc, av.error.FFmpegError) and exc.strerror:
        return str(exc.strerror)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _close(container: InputContainer) -> None:
    try:
        container.close()
    except Exception as exc:  # a half-dead connection may fail to close; it is dropped either way
        log.debug("closing a container failed: %s", _reason(exc))
