"""The load test's clients and how each answer is judged.

Every answer is one of:
- ok: the expected status with a right body (a recognition names the people it named before the load);
- refused: a 503 in the error shape with a `Retry-After` of whole seconds ≥ 1 (the server sheds
  load); the client waits that long before its next request, as a well-behaved client does;
- no face: a 422 at enrolment for a photo without a face (a refusal of the photo, not an error);
- an error: anything else (a 503 without Retry-After, a 500, a timeout, a wrong answer).
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import requests

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png"}
TIMEOUT = 60.0  # seconds a client waits for an answer; past it the request is an error
LIGHT_PAUSE = 0.2  # seconds a light client waits between two requests (an operator, not a flood)


@dataclass
class Answer:
    kind: str
    at: float  # time.monotonic() when the answer arrived
    outcome: str  # "ok", "refused", "no face" or "error"
    seconds: float = 0.0
    pid: str = ""
    detail: str = ""  # refused: "code/reason"; error: what was wrong


@dataclass
class Results:
    answers: list[Answer] = field(default_factory=list)
    enrolled: list[dict] = field(default_factory=list)  # {"person", "name", "photo", "face", "job"}
    jobs: list[str] = field(default_factory=list)  # job ids the light clients read
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, answer: Answer) -> None:
        with self.lock:
            self.answers.append(answer)

    def between(self, start: float, end: float) -> list[Answer]:
        with self.lock:
            return [a for a in self.answers if start <= a.at < end]


class Client:
    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, **kwargs) -> tuple[requests.Response, float]:
        start = time.perf_counter()
        response = self.session.request(method, self.base + path, timeout=kwargs.pop("timeout", TIMEOUT), **kwargs)
        return response, time.perf_counter() - start


def retry_after(response: requests.Response) -> int | None:
    """The whole seconds of a well-formed refusal: a 503 with `Retry-After` ≥ 1 and the error
    shape; None for anything else."""
    if response.status_code != 503:
        return None
    value = response.headers.get("Retry-After", "")
    if not value.isdigit() or int(value) < 1:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if body.get("success") is not False or not isinstance(error, dict) or not isinstance(error.get("code"), str) \
            or not isinstance(error.get("message"), str):
        return None
    return int(value)


def refusal_detail(response: requests.Response) -> str:
    error = response.json()["error"]
    details = error.get("details") if isinstance(error.get("details"), dict) else {}
    return "/".join(str(part) for part in (error["code"], details.get("reason")) if part)


def judge(results: Results, kind: str, response: requests.Response, took: float, stop: threading.Event,
          check: Callable[[requests.Response], str | None]) -> str:
    """Record one answer; ``check`` says what is wrong with an answer of the expected status (None:
    nothing). Returns the outcome: "ok", "refused" (the client has waited its Retry-After) or "error"."""
    now, pid = time.monotonic(), response.headers.get("X-Worker-PID", "?")
    wait = retry_after(response)
    if wait is not None:
        results.add(Answer(kind, now, "refused", took, pid, refusal_detail(response)))
        stop.wait(wait)
        return "refused"
    problem = check(response)
    results.add(Answer(kind, now, "ok" if problem is None else "error", took, pid, problem or ""))
    return "ok" if problem is None else "error"


def send(results: Results, kind: str, stop: threading.Event, check: Callable[[requests.Response], str | None],
         call: Callable[[], tuple[requests.Response, float]], *, no_face: bool = False) -> requests.Response | None:
    """One request, sent again after each refusal (once its Retry-After has passed) until the load
    stops: a write refused is retried, not dropped. The response when it is ok, else None."""
    while not stop.is_set():
        try:
            response, took = call()
        except requests.RequestException as exc:
            results.add(Answer(kind, time.monotonic(), "error", detail=f"{type(exc).__name__}: {exc}"))
            return None
        if no_face and response.status_code == 422:  # no face in the photo: refused, not an error
            results.add(Answer(kind, time.monotonic(), "no face", took, detail=response.json()["error"]["code"]))
            return None
        outcome = judge(results, kind, response, took, stop, check)
        if outcome != "refused":
            return response if outcome == "ok" else None
    return None


def status_is(expected: int, key: str | None = None) -> Callable[[requests.Response], str | None]:
    """A check: the answer has the ``expected`` status and (when given) ``key`` in its JSON body."""

    def check(response: requests.Response) -> str | None:
        if response.status_code != expected:
            return f"{response.status_code} {response.text[:200]}"
        if key is not None and key not in response.json():
            return f"{response.status_code} without {key!r}: {response.text[:200]}"
        return None

    return check


def photo_files(*folders: Path) -> list[Path]:
    return sorted(p for folder in folders if folder.is_dir() for p in folder.rglob("*")
                  if p.suffix.lower() in PHOTO_SUFFIXES)


def labels_of(body: dict) -> list[str]:
    return sorted(face["label"] for face in body["faces"])


def recognizer(client: Client, probes: list[tuple[Path, bytes, list[str]]], stop: threading.Event,
               results: Results) -> None:
    rng = random.Random()
    while not stop.is_set():
        path, data, expected = rng.choice(probes)

        def check(response: requests.Response, name: str = path.name, expected: list[str] = expected) -> str | None:
            if response.status_code != 200:
                return f"{response.status_code} {response.text[:200]}"
            found = labels_of(response.json())
            return None if found == expected else f"{name}: {found}, expected {expected}"

        try:
            response, took = client.call("POST", "/api/faces/recognize/", files={"image": (path.name, data)},
                                         data={"gallery": "base"})
        except requests.RequestException as exc:
            results.add(Answer("recognize", time.monotonic(), "error", detail=f"{type(exc).__name__}: {exc}"))
            continue
        judge(results, "recognize", response, took, stop, check)


def enroller(number: int, client: Client, photos: Iterator[Path], stop: threading.Event, results: Results) -> None:
    for attempt in itertools.count():
        if stop.is_set():
            return
        path = next(photos)
        name = f"load-{number}-{attempt}"
        run_async = attempt % 2 == 1
        kind = "enrol (async)" if run_async else "enrol (sync)"
        response = send(results, "create person", stop, status_is(201, "id"),
                        partial(client.call, "POST", "/api/people/", json={"name": name, "galleries": ["load"]}))
        if response is None:
            continue
        person = response.json()["id"]
        # force: the photos are reused for many people, and the load test measures serving, not
        # the duplicate check.
        response = send(results, kind, stop, status_is(202 if run_async else 201),
                        partial(client.call, "POST", f"/api/people/{person}/faces/",
                                files={"image": (path.name, path.read_bytes())},
                                data={"largest": "true", "force": "true", **({"async": "true"} if run_async else {})}),
                        no_face=True)
        if response is None:
            continue
        body = response.json()
        face = body["results"][0]["face"]["id"] if run_async else body["id"]
        with results.lock:
            results.enrolled.append({"person": person, "name": name, "photo": path, "face": face,
                                     "job": body.get("job_id")})
            if body.get("job_id"):
                results.jobs.append(body["job_id"])


def _health_ok(response: requests.Response) -> str | None:
    if response.status_code != 200 or response.json().get("status") != "ok":
        return f"{response.status_code} {response.text[:200]}"
    return None


def light_client(number: int, client: Client, stop: threading.Event, results: Results) -> None:
    """The requests that must never wait behind recognitions: create a person (no gallery, no
    face: the index does not change), list people, health, read a job; a short pause between."""
    rng = random.Random(number)
    for attempt in itertools.count():
        if stop.is_set():
            return
        with results.lock:
            job = rng.choice(results.jobs)
        requests_ = (
            ("create person", "POST", "/api/people/", {"json": {"name": f"light-{number}-{attempt}"}},
             status_is(201, "id")),
            ("list people", "GET", "/api/people/", {}, status_is(200, "results")),
            ("health", "GET", "/api/health/", {}, _health_ok),
            ("get job", "GET", f"/api/jobs/{job}/", {}, status_is(200, "state")),
        )
        kind, method, path, kwargs, check = requests_[attempt % len(requests_)]
        try:
            response, took = client.call(method, path, **kwargs)
        except requests.RequestException as exc:
            results.add(Answer(kind, time.monotonic(), "error", detail=f"{type(exc).__name__}: {exc}"))
            continue
        judge(results, kind, response, took, stop, check)
        stop.wait(LIGHT_PAUSE)
