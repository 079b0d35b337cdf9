"""The hostile runner's server: gunicorn (gunicorn.conf.py, the production settings, one worker) on a
throw-away SQLite database with one person enrolled, and the worker's memory read from /proc: before
each request its peak RSS is reset (`5 > /proc/<pid>/clear_refs` resets VmHWM to the current RSS) and
read after the answer.
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import tempfile
import time
from pathlib import Path

import requests
import websocket

from face_engine.settings import EngineSettings
from tests.processes import ApiServer, manage, service_env, wait_for

ROOT = Path(__file__).resolve().parents[2]

# The bound on what one request adds to the worker's memory, from the two settings that size it:
# decoding holds at most DECODE_BYTES per pixel of MAX_IMAGE_PIXELS (Pillow's pixels, at most 4, and
# the RGB output, 3; WebP pixels count twice: face_engine/decode.py), and the CNN detector (hog+cnn,
# when HOG finds no face) at most DETECT_BYTES per pixel of its input, FACE_DETECTION_MAX_SIDE squared
# (measured: +690 MB for a 2048×2048 image with ONNX Runtime, which keeps that memory for the next).
DECODE_BYTES = 8
DETECT_BYTES = 180
BOUND_SLACK_MB = 64
# The worker's RSS over the whole run may not exceed its idle RSS plus this many bounds: what the
# allocators keep between requests is reused, so a leak or an accumulation shows here.
RUN_BOUNDS = 2
PERSON_PHOTO = ROOT / "tests" / "data" / "people" / "train" / "obama" / "obama.jpg"


# --- the server and the worker's memory ---------------------------------------------------------

def proc_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} for pid {pid}")


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def children(pid: int) -> list[int]:
    done = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, timeout=10)
    return [int(p) for p in done.stdout.split()]



class Server:
    """The server under test and the worker whose memory is measured."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dir = Path(tempfile.mkdtemp(prefix="facerec-hostile-"))
        self.engine = EngineSettings.from_env()
        self.env = service_env(None, SQLITE_PATH=str(self.dir / "db.sqlite3"), DATABASE_URL="",
                               MEDIA_ROOT=str(self.dir / "media"), CAMERA_OPEN_TIMEOUT="3", CAMERA_READ_TIMEOUT="3",
                               CAMERA_LEASE_SECONDS="6", THROTTLE_ANON="1000000/minute",
                               # One embedding per enrolled photo instead of ten jittered ones: the decoding
                               # under test is the same, and the corpus's 500 enrolments fit the time.
                               FACE_ENROL_JITTERS="1")
        self.bound_mb = args.bound_mb or (DECODE_BYTES * self.engine.max_image_pixels
                                          + DETECT_BYTES * self.engine.detection_max_side ** 2) / 2**20 + BOUND_SLACK_MB
        self.failures: list[str] = []
        self.server: ApiServer | None = None
        self.worker_pid = 0
        self.baseline_mb = 0.0
        self.highest_mb = 0.0  # the worker's highest RSS in the whole run

    # -- setup --
    def start(self) -> None:
        manage(self.env, "migrate", "--noinput")
        password = secrets.token_urlsafe(16)
        manage({**self.env, "DJANGO_SUPERUSER_PASSWORD": password}, "createsuperuser", "--noinput",
               "--username", "hostile", "--email", "hostile@example.com")
        self.server = ApiServer("gunicorn", self.env, self.dir, workers=1).wait_ready(timeout=180)
        [self.worker_pid] = wait_for(lambda: children(self.server.pid), timeout=30, what="the gunicorn worker")
        answer = requests.post(f"{self.server.base}/api/auth/token/",
                               json={"username": "hostile", "password": password}, timeout=30)
        answer.raise_for_status()
        self.token = answer.json()["token"]
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {self.token}"
        self.person = self.post_json("/api/people/", {"name": "Barack Obama"})["id"]
        self.target = self.post_json("/api/people/", {"name": "Hostile enrolment"})["id"]
        files = {"image": (PERSON_PHOTO.name, PERSON_PHOTO.read_bytes(), "image/jpeg")}
        enrolled = self.http.post(f"{self.server.base}/api/people/{self.person}/faces/", files=files, timeout=120)
        assert enrolled.status_code == 201, enrolled.text
        for _ in range(3):  # warm every path once: models, index, the WebSocket consumer
            self.http.post(f"{self.server.base}/api/faces/recognize/", files=files, timeout=120).raise_for_status()
        ws = self.ws_connect()
        ws.send_binary(PERSON_PHOTO.read_bytes())
        self.ws_answer(ws, 1)
        ws.close()
        time.sleep(1)
        self.baseline_mb = proc_kb(self.worker_pid, "VmRSS") / 1024

    def post_json(self, path: str, body: dict) -> dict:
        answer = self.http.post(self.server.base + path, json=body, timeout=60)
        assert answer.status_code == 201, answer.text
        return answer.json()

    def ws_connect(self) -> websocket.WebSocket:
        url = f"ws://127.0.0.1:{self.server.port}/ws/live/?token={self.token}"
        ws = websocket.create_connection(url, timeout=120, origin=self.server.base)
        ready = json.loads(ws.recv())
        assert ready.get("type") == "ready", ready
        return ws

    @staticmethod
    def ws_answer(ws: websocket.WebSocket, frame: int) -> dict:
        while True:
            message = json.loads(ws.recv())
            if message.get("type") in ("result", "error") and message.get("frame") == frame:
                return message

    # -- measuring one request --
    def measured(self, send):
        """(send's result, MB the worker's peak RSS rose above its RSS before, seconds). Freed memory
        the allocator keeps is reused by the next request: what one request adds is what counts."""
        reset_peak(self.worker_pid)  # VmHWM := VmRSS
        before = proc_kb(self.worker_pid, "VmHWM") / 1024
        start = time.perf_counter()
        result = send()
        seconds = time.perf_counter() - start
        peak = proc_kb(self.worker_pid, "VmHWM") / 1024 - before
        self.highest_mb = max(self.highest_mb, proc_kb(self.worker_pid, "VmHWM") / 1024)
        return result, max(peak, 0.0), seconds

    def check_alive(self, when: str) -> None:
        if not self.server.alive() or children(self.server.pid) != [self.worker_pid]:
            self.failures.append(f"the server's worker died or was replaced {when}")
            return
        health = requests.get(f"{self.server.base}/api/health/", timeout=30)
        if health.status_code != 200:
            self.failures.append(f"health answered {health.status_code} {when}")
