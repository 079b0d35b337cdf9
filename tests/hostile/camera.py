"""The corpus through a camera worker (`manage.py run_cameras`): served as an MJPEG camera, after
which the worker must still be up and reading frames.
"""

from __future__ import annotations

import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.hostile.corpus import Case
from tests.hostile.server import PERSON_PHOTO, Server, proc_kb, reset_peak
from tests.processes import Process, wait_for


class CorpusCamera:
    """multipart/x-mixed-replace on loopback: each connection opens with three good frames (FFmpeg
    probes the stream's first parts), then the corpus from where the last connection left it, one
    case a part, then good frames until stopped: the worker must read on through all of it."""

    def __init__(self, cases: list[Case], good: bytes) -> None:
        self.cases, self.good = cases, good
        self.served = self.connections = 0
        self.stopped = threading.Event()
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                camera.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    for part in camera.parts():
                        head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(part)}\r\n\r\n"
                        self.wfile.write(head.encode() + part + b"\r\n")
                        self.wfile.flush()
                except OSError:
                    pass  # the worker hung up (it reconnects): the next connection continues the corpus

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/stream"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def parts(self):
        for _ in range(3):
            yield self.good
            self.stopped.wait(0.1)
        while not self.stopped.is_set():
            if self.served < len(self.cases):
                case = self.cases[self.served]
                self.served += 1
                yield case.data
                self.stopped.wait(0.02)
            else:
                yield self.good
                self.stopped.wait(0.1)

    def stop(self) -> None:
        self.stopped.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def camera_check(run: Server, cases: list[Case]) -> dict:
    """The corpus through a camera worker: it must stay up and keep reading frames after the corpus."""
    source = CorpusCamera(cases, PERSON_PHOTO.read_bytes())
    worker = Process("run_cameras", [sys.executable, "manage.py", "run_cameras", "--worker-id", "hostile"], run.env,
                     run.dir / "run_cameras.log")
    result = {"cases": len(cases), "alive": False, "frames_after": 0}
    try:
        camera = run.post_json("/api/cameras/", {"name": "hostile", "source_url": source.url, "analysis_fps": 5})
        path = f"{run.server.base}/api/cameras/{camera['id']}/"
        status = lambda: run.http.get(path, timeout=30).json()["status"]  # noqa: E731
        wait_for(lambda: worker.alive() and source.served > 0, timeout=120, what="the camera worker reading",
                 detail=worker.log_tail)
        reset_peak(worker.pid)
        start_rss = proc_kb(worker.pid, "VmRSS") / 1024
        wait_for(lambda: source.served >= len(cases) or not worker.alive(), timeout=240,
                 what="the corpus served to the camera worker", detail=worker.log_tail)
        time.sleep(float(run.env["CAMERA_LEASE_SECONDS"]) / 3 + 1)  # its next status report
        before = status()["frames_in"]
        wait_for(lambda: not worker.alive() or status()["frames_in"] >= before + 10, timeout=60,
                 what="frames read after the corpus", detail=worker.log_tail)
        after = status()
        result.update(alive=worker.alive(), frames_after=after["frames_in"] - before, state=after["state"],
                      frames_in=after["frames_in"], connections=source.connections, last_error=after["last_error"],
                      peak_mb=proc_kb(worker.pid, "VmHWM") / 1024 - start_rss if worker.alive() else 0.0)
    except AssertionError as exc:
        result["error"] = str(exc)[:500]
    finally:
        result["alive"] = result["alive"] and worker.alive()
        worker.stop()
        source.stop()
    return result
