"""The hostile-upload corpus (tests/hostile/corpus.py) against a real server: `make test-hostile`.

    .venv/bin/python tests/hostile/run.py [--families truncated,bombs] [--skip-camera] [--keep]

It starts gunicorn (gunicorn.conf.py, the production settings, one worker) on a throw-away SQLite
database, enrols one person, then sends every case to POST /api/faces/recognize/, to
/api/faces/batch-recognize/ (eight cases a request), /api/faces/verify/ (against the person),
POST /api/people/{id}/faces/ and the live WebSocket /ws/live/ (one binary frame a case, each answer
awaited), and serves the corpus as an MJPEG camera to a camera worker (`manage.py run_cameras`).

Every answer is checked: the documented error shape, a code the case allows (docs/api.md "Errors"),
no 5xx; the server is checked alive (same worker pid, health answering) after each family. Memory:
before each request the worker's peak RSS is reset (`5 > /proc/<pid>/clear_refs` resets VmHWM to the
current RSS) and read after its answer: what the request added must stay within the bound (--bound-mb,
default: DECODE_BYTES × MAX_IMAGE_PIXELS + DETECT_BYTES × FACE_DETECTION_MAX_SIDE² + 64 MB), and the
worker's highest RSS over the run within its idle RSS plus RUN_BOUNDS bounds.

Exit status 0 only when every check holds: 1 on a failed check, 2 when the setup failed.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
import websocket  # noqa: E402

from face_engine.settings import EngineSettings  # noqa: E402
from tests.hostile.corpus import OK, Case, build  # noqa: E402
from tests.processes import ApiServer, Process, manage, service_env, wait_for  # noqa: E402

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
STATUS = {"empty_file": 400, "not_an_image": 400, "corrupt_image": 400, "unsupported_format": 415,
          "image_too_large": 413, "file_too_large": 413, "frame_too_large": None}
FACE_CODES = {"no_face", "multiple_faces"}  # a decoded image without one usable face: "ok" for enrol/verify
BATCH = 8
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


@dataclass
class Answer:
    channel: str
    case: Case
    status: int  # HTTP status (0: the WebSocket or the camera)
    outcome: str  # "ok" or the error code
    problem: str = ""  # why the answer is wrong ("" when right)
    peak_mb: float = 0.0
    seconds: float = 0.0


@dataclass
class Family:
    name: str
    cases: int = 0
    answers: Counter = field(default_factory=Counter)
    server_errors: int = 0
    wrong: list[str] = field(default_factory=list)
    peak_mb: float = 0.0
    peak_case: str = ""
    slowest: float = 0.0
    slowest_case: str = ""


class Run:
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
        self.live_max = int(os.environ.get("LIVE_MAX_FRAME_BYTES", 4 * 1024 * 1024))
        self.bound_mb = args.bound_mb or (DECODE_BYTES * self.engine.max_image_pixels
                                          + DETECT_BYTES * self.engine.detection_max_side ** 2) / 2**20 + BOUND_SLACK_MB
        self.families: dict[str, Family] = {}
        self.channels: dict[str, Family] = {}
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

    # -- judging one answer --
    @staticmethod
    def outcome(status: int, body) -> tuple[str, str]:
        """(outcome, what is wrong with the answer's shape) of an HTTP answer, a batch item or a
        WebSocket message (status 0)."""
        if status >= 500:
            return f"http_{status}", "server error"
        if not isinstance(body, dict):
            return "not_json", f"not a JSON object: {str(body)[:200]}"
        if body.get("success") is True or body.get("type") == "result":
            return OK, ""
        error = body if body.get("type") == "error" else body.get("error")
        shaped = body.get("type") == "error" or body.get("success") is False
        if not shaped or not isinstance(error, dict) or not isinstance(error.get("code"), str) \
                or not isinstance(error.get("message"), str):
            return "bad_shape", f"not the error shape: {str(body)[:200]}"
        return error["code"], ""

    def judge(self, channel: str, case: Case, status: int, body, *, allowed: frozenset[str] | None = None,
              documented_status: bool = True) -> Answer:
        allowed = case.expect if allowed is None else allowed
        code, problem = self.outcome(status, body)
        if code in FACE_CODES and status in (0, 200, 422):
            code = OK  # decoded, without one usable face: what "ok" means where a face is required
        answer = Answer(channel, case, status, code, problem)
        if not problem and code not in allowed:
            answer.problem = f"{code} ({status}); expected {sorted(allowed)}"
        elif not problem and documented_status and status and STATUS.get(code, status) not in (None, status):
            answer.problem = f"{code} with status {status}, documented {STATUS[code]}"
        return answer

    def record(self, answer: Answer, family: str) -> None:
        for table, key in ((self.families, family), (self.channels, answer.channel)):
            row = table.setdefault(key, Family(key))
            how = {"batch": "item", "websocket": "ws"}.get(answer.channel, answer.status)
            row.answers[f"{how} {answer.outcome}"] += 1
            row.server_errors += answer.status >= 500
            if answer.problem:
                row.wrong.append(f"{answer.channel} {answer.case.name}: {answer.problem}")
            if answer.peak_mb > row.peak_mb:
                row.peak_mb, row.peak_case = answer.peak_mb, f"{answer.channel} {answer.case.name}"
            if answer.seconds > row.slowest:
                row.slowest, row.slowest_case = answer.seconds, f"{answer.channel} {answer.case.name}"

    # -- the channels --
    def upload(self, channel: str, path: str, case: Case, field_name: str = "image", data: dict | None = None):
        files = {field_name: (f"{case.name}.bin", case.data, case.content_type)}

        def send():
            return self.http.post(self.server.base + path, files=files, data=data or {}, timeout=180)

        response, peak, seconds = self.measured(send)
        try:
            body = response.json()
        except ValueError:
            body = response.text[:200]
        answer = self.judge(channel, case, response.status_code, body)
        answer.peak_mb, answer.seconds = peak, seconds
        return answer

    def batch(self, cases: list[Case]) -> list[Answer]:
        files = [("images", (f"{c.name}.bin", c.data, c.content_type)) for c in cases]
        response, peak, seconds = self.measured(
            lambda: self.http.post(self.server.base + "/api/faces/batch-recognize/", files=files, timeout=300))
        try:
            body = response.json()
        except ValueError:
            body = {}
        results = body.get("results") if isinstance(body, dict) else None
        if response.status_code != 200 or not isinstance(results, list) or len(results) != len(cases):
            return [Answer("batch", c, response.status_code, f"http_{response.status_code}",
                           "server error" if response.status_code >= 500 else f"batch answer: {str(body)[:200]}",
                           peak, seconds) for c in cases]
        answers = []
        for case, item in zip(cases, results, strict=True):
            answer = self.judge("batch", case, 200, item, documented_status=False)  # per image: no status
            answer.peak_mb, answer.seconds = peak, seconds
            answers.append(answer)
        return answers

    def live(self, ws, frame: int, case: Case) -> Answer:
        allowed = frozenset({"frame_too_large"}) if len(case.data) > self.live_max else case.expect

        def send():
            ws.send_binary(case.data)
            return self.ws_answer(ws, frame)

        message, peak, seconds = self.measured(send)
        answer = self.judge("websocket", case, 0, message, allowed=allowed)
        answer.peak_mb, answer.seconds = peak, seconds
        return answer

    def large(self, case: Case) -> bool:
        """Declares more than an eighth of the pixel limit (a batch gets one of those at most)."""
        import io
        import warnings

        from PIL import Image

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Pillow's notes on corrupt EXIF: this is only a size probe
                with Image.open(io.BytesIO(case.data)) as image:
                    return image.width * image.height > self.engine.max_image_pixels // 8
        except Exception:  # noqa: BLE001 - not an image to Pillow: small to the engine
            return False

    def family(self, name: str, cases: list[Case]) -> None:
        started = time.monotonic()
        row = self.families.setdefault(name, Family(name))
        row.cases = len(cases)
        answers: list[Answer] = []
        large = {case.name for case in cases if self.large(case)}
        for case in cases:
            answers.append(self.upload("recognize", "/api/faces/recognize/", case))
            if case.name in large and OK in case.expect:
                continue  # verify and enrol decode through the same engine call: the time goes to the rest
            answers.append(self.upload("verify", "/api/faces/verify/", case, data={"person_id": str(self.person)}))
            answers.append(self.upload("enrol", f"/api/people/{self.target}/faces/", case))
        group: list[Case] = []
        for case in cases:
            if case.name in large:
                answers += self.batch([case])
                continue
            group.append(case)
            if len(group) == BATCH:
                answers += self.batch(group)
                group = []
        if group:
            answers += self.batch(group)
        ws = self.ws_connect()
        for frame, case in enumerate(cases, 1):
            answers.append(self.live(ws, frame, case))
        ws.close()
        for answer in answers:
            self.record(answer, name)
        self.check_alive(f"after the {name} family")
        rss = proc_kb(self.worker_pid, "VmRSS") / 1024
        print(f"  {name}: {len(cases)} cases, {len(answers)} answers, {time.monotonic() - started:.0f} s; "
              f"worker RSS now {rss:.0f} MB", flush=True)

    def check_alive(self, when: str) -> None:
        if not self.server.alive() or children(self.server.pid) != [self.worker_pid]:
            self.failures.append(f"the server's worker died or was replaced {when}")
            return
        health = requests.get(f"{self.server.base}/api/health/", timeout=30)
        if health.status_code != 200:
            self.failures.append(f"health answered {health.status_code} {when}")


# --- the camera: the corpus as an MJPEG stream --------------------------------------------------------

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


def camera_check(run: Run, cases: list[Case]) -> dict:
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


# --- the report ----------------------------------------------------------------------------------------

def answers_text(answers: Counter) -> str:
    return ", ".join(f"{key}: {n}" for key, n in sorted(answers.items()))


def table(title: str, rows: list[Family]) -> None:
    print(f"\n{title:<12} {'cases':>5} {'5xx':>4} {'wrong':>5} {'peak MB':>8} {'slowest':>8}  "
          "answers (HTTP status, batch item or ws message; outcome: n)")
    for row in rows:
        print(f"{row.name:<12} {row.cases or '':>5} {row.server_errors:>4} {len(row.wrong):>5} {row.peak_mb:>8.0f} "
              f"{row.slowest:>7.2f}s  {answers_text(row.answers)}")
        print(f"{'':<12} peak: {row.peak_case}; slowest: {row.slowest_case}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default="", help="only these families (comma-separated)")
    parser.add_argument("--bound-mb", type=float, default=0.0,
                        help="peak MB a request may add to the idle worker (default: from MAX_IMAGE_PIXELS)")
    parser.add_argument("--skip-camera", action="store_true", help="leave out the camera worker")
    parser.add_argument("--keep", action="store_true", help="keep the database and the logs")
    args = parser.parse_args()
    began = time.monotonic()
    run = Run(args)
    cases = build(max_upload_bytes=run.engine.max_upload_bytes, max_image_pixels=run.engine.max_image_pixels)
    families: dict[str, list[Case]] = defaultdict(list)
    for case in cases:
        families[case.family].append(case)
    chosen = [f for f in families if not args.families or f in args.families.split(",")]
    print(f"hostile corpus: {len(cases)} cases in {len(families)} families "
          f"(built in {time.monotonic() - began:.0f} s); "
          f"MAX_UPLOAD_BYTES={run.engine.max_upload_bytes}, MAX_IMAGE_PIXELS={run.engine.max_image_pixels}")
    try:
        try:
            run.start()
        except Exception as exc:  # noqa: BLE001 - reported, exit 2
            tail = run.server.log_tail() if run.server else ""
            print(f"setup failed: {exc!r}\n{tail}", file=sys.stderr)
            return 2
        print(f"server: gunicorn worker pid {run.worker_pid}, idle RSS {run.baseline_mb:.0f} MB; bound per request: "
              f"+{run.bound_mb:.0f} MB ({DECODE_BYTES} B × MAX_IMAGE_PIXELS {run.engine.max_image_pixels} + "
              f"{DETECT_BYTES} B × FACE_DETECTION_MAX_SIDE² {run.engine.detection_max_side}² + {BOUND_SLACK_MB} MB); "
              f"over the run: idle + {RUN_BOUNDS} bounds")
        for name in chosen:
            run.family(name, families[name])
            if run.failures:
                break
        camera = {} if args.skip_camera or run.failures else camera_check(
            run, [c for name in chosen for c in families[name]])
    finally:
        if run.server:
            run.server.stop()
        if not args.keep:
            shutil.rmtree(run.dir, ignore_errors=True)
    table("family", [run.families[name] for name in chosen if name in run.families])
    table("channel", list(run.channels.values()))
    if camera:
        print(f"\ncamera: {camera}")
    failures = list(run.failures)
    for row in run.families.values():
        failures += row.wrong[:20]
        if row.server_errors:
            failures.append(f"{row.name}: {row.server_errors} server errors")
        if row.peak_mb > run.bound_mb:
            failures.append(f"{row.name}: peak +{row.peak_mb:.0f} MB ({row.peak_case}) over the bound "
                            f"+{run.bound_mb:.0f} MB")
    print(f"worker's highest RSS: {run.highest_mb:.0f} MB (idle {run.baseline_mb:.0f} MB)")
    if run.highest_mb > run.baseline_mb + RUN_BOUNDS * run.bound_mb:
        failures.append(f"the worker's RSS reached {run.highest_mb:.0f} MB, over idle + {RUN_BOUNDS} bounds")
    if camera and not (camera.get("alive") and camera.get("frames_after", 0) >= 10 and "error" not in camera):
        failures.append(f"the camera worker did not survive the corpus or stopped reading: {camera}")
    if camera and camera.get("peak_mb", 0) > run.bound_mb:
        failures.append(f"the camera worker's peak +{camera['peak_mb']:.0f} MB is over the bound")
    print(f"\n{sum(sum(r.answers.values()) for r in run.families.values())} answers in "
          f"{time.monotonic() - began:.0f} s; {len(failures)} failures")
    for failure in failures:
        print(f"FAIL {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
