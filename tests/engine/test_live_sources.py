"""VideoSource against real inputs: H.264 files written here, a local MJPEG server that stops,
comes back, stalls or sends garbage, listeners that never answer, and a real RTSP server."""

from __future__ import annotations

import io
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from face_engine.live.frames import LatestFrame
from face_engine.live.source_url import SourceSpec, redact
from face_engine.live.sources import END_OF_FILE, VideoSource

W, H, FPS = 320, 240, 25


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def make_video(path: Path, frames: int) -> Path:
    """A 320×240 25 fps H.264 file whose frame i has red level 10·i (mod 250)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"preset": "ultrafast", "tune": "zerolatency"}
        for i in range(frames):
            image = np.zeros((H, W, 3), np.uint8)
            image[:, :, 0] = (10 * i) % 250
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def network(url: str) -> SourceSpec:
    return SourceSpec(kind="rtsp" if url.startswith("rtsp") else "http", url=url, display=redact(url))


@pytest.fixture
def sources() -> Iterator[Callable[..., tuple[VideoSource, LatestFrame]]]:
    """Makes started sources and stops every one of them at the end, even after a failure."""
    made: list[VideoSource] = []

    def make(spec: SourceSpec, **options: float) -> tuple[VideoSource, LatestFrame]:
        slot = LatestFrame()
        source = VideoSource(spec, slot, **options)  # type: ignore[arg-type]
        made.append(source)
        source.start()
        return source, slot

    yield make
    for source in made:
        source.stop(timeout=5)


# -- files ----------------------------------------------------------------------------------------


def test_a_file_plays_at_its_own_rate_keeps_the_newest_and_ends(tmp_path, sources):
    video = make_video(tmp_path / "two_seconds.mp4", 2 * FPS)
    source, slot = sources(SourceSpec(kind="file", url=str(video)))
    time.sleep(1.0)
    status = source.status()
    assert 19 <= status.frames_in <= 31, status  # 25 at real rate: not all 50 at once, not stuck
    assert status.state == "connected" and status.last_frame_at is not None
    newest = slot.peek()
    assert newest is not None and newest.seq >= status.frames_in
    assert newest.pts == pytest.approx((newest.seq - 1) / FPS, abs=1e-6)  # the file's own timeline
    taken = slot.take(timeout=1)
    assert taken is not None and taken.image().shape == (H, W, 3)
    assert slot.dropped >= taken.seq - 2  # everything before the one taken was replaced untaken

    assert wait_for(lambda: not source.running, timeout=3)
    status = source.status()
    assert (status.state, status.ended, status.last_error) == ("stopped", True, END_OF_FILE)
    assert status.frames_in == 2 * FPS and status.reconnects == 0
    assert slot.received == 2 * FPS and not slot.closed  # the caller owns the slot


def test_a_looped_file_continues_seq_and_pts_past_its_end(tmp_path, sources):
    video = make_video(tmp_path / "short.mp4", 10)  # 0.4 s
    source, slot = sources(SourceSpec(kind="file", url=str(video), loop=True))
    seen = []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and len(seen) < 8:
        frame = slot.take(timeout=0.5)
        if frame is not None and frame.seq > 10:
            seen.append(frame)
        time.sleep(0.1)
    assert len(seen) >= 5, source.status()
    assert all(b.seq > a.seq and b.pts > a.pts for a, b in zip(seen, seen[1:], strict=False))
    last = seen[-1]
    assert last.pts == pytest.approx((last.seq - 1) / FPS, abs=1e-6)  # no gap or overlap at the seams
    red = int(last.image()[0, 0, 0])
    assert abs(red - 10 * ((last.seq - 1) % 10)) <= 6  # the pixels are the frame the seq says
    status = source.status()
    assert status.state == "connected" and not status.ended and status.reconnects == 0
    assert 18 <= status.fps_in <= 32


def test_a_file_that_is_not_a_video_is_retried_without_killing_the_reader(tmp_path, sources):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all " * 100)
    source, _ = sources(SourceSpec(kind="file", url=str(broken)), reconnect_min=0.1, reconnect_max=0.2)
    assert wait_for(lambda: source.status().reconnects >= 2, timeout=3), source.status()
    status = source.status()
    assert status.state == "reconnecting" and status.last_error.startswith("open failed: ")
    assert source.running and not status.ended


# -- HTTP MJPEG -----------------------------------------------------------------------------------


def jpeg(level: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (W, H), (level, 0, 0)).save(buffer, "JPEG")
    return buffer.getvalue()


JUNK_JPEG = b"\xff\xd8" + b"\x55" * 4000 + b"\xff\xd9"  # framed like a JPEG, never decodes


class MjpegServer:
    """multipart/x-mixed-replace on 127.0.0.1. ``mode``: "stream" (10 fps), "stall" (five frames,
    then silence with the connection open) or "garbage" (three frames, then parts that are not JPEGs)."""

    def __init__(self, port: int = 0, mode: str = "stream") -> None:
        self.stopped = threading.Event()
        stopped = self.stopped
        frames = [jpeg(level) for level in range(0, 250, 25)]

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                try:
                    while not stopped.is_set():
                        body = JUNK_JPEG if mode == "garbage" and i >= 3 else frames[i % len(frames)]
                        head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(body)}\r\n\r\n"
                        self.wfile.write(head.encode() + body + b"\r\n")
                        self.wfile.flush()
                        i += 1
                        # A stall holds the connection open after enough frames for FFmpeg's probe.
                        stopped.wait(10 if mode == "stall" and i >= 5 else 0.1)
                except OSError:
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stopped.set()  # handlers leave their loop and their connections close
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)


@pytest.fixture
def mjpeg() -> Iterator[Callable[..., MjpegServer]]:
    servers: list[MjpegServer] = []

    def serve(port: int = 0, mode: str = "stream") -> MjpegServer:
        servers.append(MjpegServer(port, mode))
        return servers[-1]

    yield serve
    for server in servers:
        if not server.stopped.is_set():
            server.stop()


@pytest.mark.slow
def test_mjpeg_frames_arrive_and_resume_within_5_s_after_the_server_comes_back(mjpeg, sources):
    server = mjpeg()
    url = f"http://viewer:secret@127.0.0.1:{server.port}/video"
    source, slot = sources(network(url), open_timeout=3, read_timeout=2, reconnect_min=0.2, reconnect_max=2)
    assert wait_for(lambda: source.status().frames_in >= 5, timeout=5), source.status()
    frame = slot.take(timeout=1)
    assert frame is not None and frame.image().shape == (H, W, 3)
    assert source.status().state == "connected" and 5 <= source.status().fps_in <= 14

    server.stop()
    assert wait_for(lambda: source.status().state == "reconnecting", timeout=5), source.status()
    assert source.status().last_error
    time.sleep(1.0)  # a few refused reconnections
    down = source.status()
    assert "refused" in down.last_error.lower() and "secret" not in down.last_error

    mjpeg(port=server.port)
    back = time.monotonic()
    assert wait_for(lambda: source.status().frames_in > down.frames_in, timeout=5), source.status()
    assert time.monotonic() - back < 5
    status = source.status()
    assert status.state == "connected" and status.reconnects >= 2
    newer = slot.take(timeout=1)
    assert newer is not None and newer.seq > frame.seq  # seq carries on across connections


# -- no answer, no server -------------------------------------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP listener that accepts every connection and never says a word."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not done.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    done.set()
    thread.join(2)
    for conn in held:
        conn.close()
    listener.close()


@pytest.mark.parametrize("scheme", ["http", "rtsp"])
def test_a_source_that_never_answers_times_out_on_open(scheme, silent_port, sources):
    started = time.monotonic()
    source, _ = sources(network(f"{scheme}://cam:pw@127.0.0.1:{silent_port}/live"), open_timeout=1, read_timeout=1)
    assert wait_for(lambda: source.status().state == "reconnecting", timeout=4), source.status()
    assert 0.9 <= time.monotonic() - started <= 2.5  # the open timeout, not FFmpeg's own minutes
    status = source.status()
    assert status.last_error == "no answer within 1 s (open timeout)" and status.frames_in == 0
    time.sleep(0.8)  # back in a blocked open after the 0.5 s backoff
    stopping = time.monotonic()
    source.stop(timeout=3)
    assert time.monotonic() - stopping < 1.6 and not source.running
    assert source.status().state == "stopped"


def test_a_closed_port_is_refused_and_retried_with_backoff(sources):
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed again on leaving: nothing listens there
    source, _ = sources(network(f"rtsp://127.0.0.1:{port}/live"), reconnect_min=0.1, reconnect_max=0.4)
    assert wait_for(lambda: source.status().reconnects >= 3, timeout=3), source.status()
    status = source.status()
    assert status.state == "reconnecting" and status.last_error == "open failed: Connection refused"
    stopping = time.monotonic()
    source.stop()
    assert time.monotonic() - stopping < 0.8 and not source.running


# -- the watchdog ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "error"), [("stall", "no data for 1 s (read timeout)"),
                                             ("garbage", "no frame for 1 s")])
def test_a_stalled_or_undecodable_stream_is_reconnected(mode, error, mjpeg, sources):
    server = mjpeg(mode=mode)
    source, _ = sources(network(f"http://127.0.0.1:{server.port}/"), open_timeout=2, read_timeout=1,
                        reconnect_min=0.2)
    started = time.monotonic()
    assert wait_for(lambda: source.status().reconnects >= 1, timeout=6), source.status()
    assert time.monotonic() - started < 4.5
    assert source.status().last_error == error


# -- RTSP -----------------------------------------------------------------------------------------

RTSP_SERVER = shutil.which("rtsp-server-perl")


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])


@pytest.fixture
def rtsp_server(tmp_path) -> Iterator[tuple[int, int]]:
    """Debian's rtsp-server-perl: (port publishers ANNOUNCE/RECORD to, port clients PLAY from)."""
    if RTSP_SERVER is None:
        pytest.skip("rtsp-server-perl is not installed (apt-get install -y rtsp-server-perl)")
    source_port, client_port = free_port(), free_port()
    log = (tmp_path / "rtsp-server.log").open("w")
    process = subprocess.Popen([RTSP_SERVER, "--serverport", str(source_port), "--clientport", str(client_port),
                                "--source_listen_address", "127.0.0.1", "--client_listen_address", "127.0.0.1",
                                "--rtp_start_port", str(free_port() & ~1)], stdout=log, stderr=subprocess.STDOUT)
    try:
        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", client_port), timeout=0.2).close()
                return True
            except OSError:
                return False

        assert wait_for(listening, timeout=10), (tmp_path / "rtsp-server.log").read_text()
        yield source_port, client_port
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


def publish(url: str, video: Path, stop: threading.Event, errors: list[BaseException]) -> None:
    """Re-mux ``video`` to the server in real time, looping, until ``stop``."""
    try:
        with av.open(str(video)) as source, av.open(url, "w", format="rtsp", options={"rtsp_transport": "udp"},
                                                    timeout=5) as out:
            stream = source.streams.video[0]
            sent = out.add_stream_from_template(stream)
            length = Fraction(2 * FPS, FPS)
            started = time.monotonic()
            loop = 0
            while not stop.is_set():
                source.seek(0)
                for packet in source.demux(stream):
                    if packet.pts is None or packet.dts is None or stop.is_set():
                        continue
                    shift = int(loop * length / packet.time_base)
                    due = started + float(packet.pts * packet.time_base + loop * length)
                    if stop.wait(max(due - time.monotonic(), 0)):
                        return
                    packet.pts, packet.dts = packet.pts + shift, packet.dts + shift
                    packet.stream = sent
                    out.mux(packet)
                loop += 1
    except Exception as exc:  # reported by the test, not lost in a thread
        errors.append(exc)


@pytest.mark.slow
def test_rtsp_from_a_real_server(tmp_path, rtsp_server, sources):
    source_port, client_port = rtsp_server
    video = make_video(tmp_path / "camera.mp4", 2 * FPS)
    stop, errors = threading.Event(), []
    publisher = threading.Thread(target=publish, args=(f"rtsp://127.0.0.1:{source_port}/cam", video, stop, errors),
                                 daemon=True)
    publisher.start()
    try:
        time.sleep(0.5)  # the stream must be announced before a client asks for it
        source, slot = sources(network(f"rtsp://127.0.0.1:{client_port}/cam"), open_timeout=8, read_timeout=2)
        assert wait_for(lambda: source.status().frames_in >= 25, timeout=12), (source.status(), errors)
        frame = slot.take(timeout=1)
        assert frame is not None and frame.image().shape == (H, W, 3)
        assert source.status().state == "connected" and not errors
        time.sleep(2.1)  # past the burst of frames FFmpeg buffered while probing the stream
        assert 20 <= source.status().fps_in <= 30

        stop.set()  # the camera goes away: UDP says nothing, the read timeout notices
        publisher.join(5)
        assert wait_for(lambda: source.status().state == "reconnecting", timeout=6), source.status()
    finally:
        stop.set()
        publisher.join(5)
