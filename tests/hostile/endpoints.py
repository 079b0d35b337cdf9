"""The channels the corpus is sent through: POST /api/faces/recognize/, /api/faces/batch-recognize/
(eight cases a request), /api/faces/verify/ (against the person), POST /api/people/{id}/faces/ and
the live WebSocket /ws/live/ (one binary frame a case, each answer awaited); and how every answer is
judged: the documented error shape, a code the case allows (docs/api.md "Errors"), no 5xx.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

from tests.hostile.corpus import OK, Case
from tests.hostile.report import Family
from tests.hostile.server import Server, proc_kb

STATUS = {"empty_file": 400, "not_an_image": 400, "corrupt_image": 400, "unsupported_format": 415,
          "image_too_large": 413, "file_too_large": 413, "frame_too_large": None}
FACE_CODES = {"no_face", "multiple_faces"}  # a decoded image without one usable face: "ok" for enrol/verify
BATCH = 8


@dataclass
class Answer:
    channel: str
    case: Case
    status: int  # HTTP status (0: the WebSocket or the camera)
    outcome: str  # "ok" or the error code
    problem: str = ""  # why the answer is wrong ("" when right)
    peak_mb: float = 0.0
    seconds: float = 0.0


class Run(Server):
    """The server, the corpus sent through every channel, and the answers tallied by family and by
    channel."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.live_max = int(os.environ.get("LIVE_MAX_FRAME_BYTES", 4 * 1024 * 1024))
        self.families: dict[str, Family] = {}
        self.channels: dict[str, Family] = {}

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
            # Forced over the quality gate and the duplicate check (the corpus is the project's photos
            # again and again, many of them degraded on purpose): what is judged here is decoding.
            answers.append(self.upload("enrol", f"/api/people/{self.target}/faces/", case, data={"force": "true"}))
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
