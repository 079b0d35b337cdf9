"""Fair, bounded serving (config/asgi.py, core/serving/): the engine's batcher gathers concurrent
requests' images into one engine call; a request that would wait too long, or finds the queue
full, is answered 503 overloaded with Retry-After at once; a light request is answered while
engine requests are in flight; waiting requests hold no database connection.

The HTTP tests run the real stack (uvicorn, config.asgi's handler, every middleware, the views) in
a thread of the test process, on the test's database, so that the test holds the engine: each
batch's engine call waits at a gate the test opens. Every check is on an order of events (the gate
is closed, so this request cannot have been answered yet), never on a duration."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from conftest import MISC, TEST, TRAIN
from tests.processes import free_port, staff_token, wait_for

OBAMA = TEST / "obama1.jpg"
PHOTOS = [OBAMA, TEST / "johnsnow_test1.jpg", TEST / "kit_with_rose.jpg", TEST / "obama_and_biden.jpg",
          TEST / "alex_lacamoire1.jpg", MISC / "obama_small.jpg"]


class Gate:
    """The batcher's engine call: each batch waits here while the gate is closed, then runs the
    real pipeline."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.opened = threading.Event()
        self.opened.set()

    def run(self, blobs):
        assert self.opened.wait(timeout=300), "the test never opened the gate"
        return self.engine.analyze_bytes(blobs)


def batcher(gate: Gate, **limits):
    from core.serving import Batcher, Limits

    values = {"max_images": 8, "wait_ms": 0, "max_wait_ms": 600_000, "queue_max": 32, **limits}
    return Batcher("recognition", gate.run, Limits(**values), on_start=gate.engine.load)


def waiting(queue, requests_: int = 0, running: int | None = None):
    """Wait until ``queue`` has that many requests waiting (and images running)."""
    def reached():
        state = queue.snapshot()
        return state["waiting_requests"] == requests_ and (running is None or state["running_images"] == running)

    wait_for(reached, timeout=120, what=f"{requests_} requests queued, {running} images running",
             interval=0.02, detail=lambda: str(queue.snapshot()))


# --- the batcher alone ------------------------------------------------------------------------

def test_concurrent_requests_go_into_one_engine_call(engine):
    gate = Gate(engine)
    queue = batcher(gate, max_images=8)
    alone = {path: engine.analyze_bytes([path.read_bytes()])[0] for path in PHOTOS}
    with ThreadPoolExecutor(len(PHOTOS)) as pool:
        gate.opened.clear()
        first = pool.submit(queue.submit, [PHOTOS[0].read_bytes()])
        waiting(queue, 0, running=1)  # the first batch holds the engine
        rest = {path: pool.submit(queue.submit, [path.read_bytes()]) for path in PHOTOS[1:]}
        waiting(queue, len(PHOTOS) - 1)
        gate.opened.set()
        results = {PHOTOS[0]: first.result(timeout=300)[0], **{p: f.result(timeout=300)[0] for p, f in rest.items()}}
    assert queue.snapshot()["batch_sizes"] == {"1": 1, str(len(PHOTOS) - 1): 1}  # 5 requests, one engine call
    for path, result in results.items():  # each request got its own image's faces
        assert [f.box for f in result.faces] == [f.box for f in alone[path].faces], path.name
        for mine, reference in zip(result.faces, alone[path].faces, strict=True):
            assert abs(mine.embedding - reference.embedding).max() < 1e-4


def test_batches_keep_requests_whole_and_within_the_bound(engine):
    gate = Gate(engine)
    queue = batcher(gate, max_images=3)
    photo = OBAMA.read_bytes()
    with ThreadPoolExecutor(8) as pool:
        gate.opened.clear()
        running = pool.submit(queue.submit, [photo])
        waiting(queue, 0, running=1)
        sizes = [2, 1, 1, 2, 4]  # arrival order; 4 is over the bound: it runs alone
        futures: list[Future] = []
        for count, size in enumerate(sizes, start=1):
            futures.append(pool.submit(queue.submit, [photo] * size))
            waiting(queue, count)
        gate.opened.set()
        assert [len(f.result(timeout=300)) for f in futures] == sizes and len(running.result()) == 1
    # 1 (running), then [2, 1] (3), [1, 2] (3), [4] alone.
    assert queue.snapshot()["batch_sizes"] == {"1": 1, "3": 2, "4": 1}


def test_a_bad_image_fails_alone_and_an_engine_failure_only_its_request(engine):
    from face_engine.types import ImageError, ImageFaces

    gate = Gate(engine)
    queue = batcher(gate)
    with ThreadPoolExecutor(4) as pool:
        gate.opened.clear()
        running = pool.submit(queue.submit, [OBAMA.read_bytes()])
        waiting(queue, 0, running=1)
        bad = pool.submit(queue.submit, [b"not an image", OBAMA.read_bytes()])
        waiting(queue, 1)
        good = pool.submit(queue.submit, [OBAMA.read_bytes()])
        waiting(queue, 2)
        gate.opened.set()
        refused, fine = bad.result(timeout=300)
        assert isinstance(refused, ImageError) and isinstance(fine, ImageFaces)
        assert isinstance(good.result(timeout=300)[0], ImageFaces) and running.result()

    # An exception out of the engine (not a bad image: a bug, memory) fails only the request that
    # causes it: the batch is run again request by request.
    def fragile(blobs):
        if b"poison" in blobs:
            raise MemoryError("poison")
        return gate.run(blobs)

    from core.serving import Batcher, Limits

    queue = Batcher("fragile", fragile, Limits(max_images=8, wait_ms=0, max_wait_ms=600_000, queue_max=8))
    with ThreadPoolExecutor(4) as pool:
        gate.opened.clear()
        running = pool.submit(queue.submit, [OBAMA.read_bytes()])
        waiting(queue, 0, running=1)
        poisoned = pool.submit(queue.submit, [b"poison"])
        waiting(queue, 1)
        innocent = pool.submit(queue.submit, [OBAMA.read_bytes()])
        waiting(queue, 2)
        gate.opened.set()
        with pytest.raises(MemoryError):
            poisoned.result(timeout=300)
        assert isinstance(innocent.result(timeout=300)[0], ImageFaces)


# --- through HTTP -----------------------------------------------------------------------------

class Served:
    """uvicorn serving a fresh config.asgi handler in a thread of this process."""

    def __init__(self, queue) -> None:
        import uvicorn

        from config.asgi import TwoLanes

        self.queue, self.app = queue, TwoLanes()
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, lifespan="off", log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_for(self.answers, timeout=60, what="the in-process server answering")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {staff_token()}"
        self.pool = ThreadPoolExecutor(32)

    def answers(self) -> bool:
        try:
            return requests.get(f"{self.base}/api/health/", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.session.post(self.base + path, timeout=300, **kwargs)

    def recognize(self, *photos: Path, path: str = "/api/faces/recognize/") -> Future:
        name = "image" if path.endswith("recognize/") and not path.endswith("batch-recognize/") else "images"
        files = [(name, (p.name, p.read_bytes(), "image/jpeg")) for p in photos]
        return self.pool.submit(self.post, path, files=files)

    def stop(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture
def serve(settings, monkeypatch, engine):
    """serve(gate, **limits): the server, its engine queue built from ``limits`` around ``gate``."""
    import people.engine

    settings.SERVING_LIGHT_THREADS, settings.SERVING_ENGINE_THREADS = 4, 8
    started: list[tuple[Served, Gate]] = []

    def start(gate: Gate, **limits) -> Served:
        queue = batcher(gate, **limits)
        monkeypatch.setattr(people.engine, "_batcher", queue)
        served = Served(queue)
        started.append((served, gate))
        return served

    yield start
    for served, gate in started:
        gate.opened.set()
        served.stop()


def overloaded(response: requests.Response, reason: str) -> dict:
    """The 503's checks: the error shape, the reason, Retry-After in whole seconds, at least 1."""
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["success"] is False and body["error"]["code"] == "overloaded"
    details = body["error"]["details"]
    assert details["reason"] == reason and isinstance(details["estimated_wait_ms"], int)
    retry = response.headers["Retry-After"]
    assert retry.isdigit() and int(retry) >= 1
    assert int(retry) >= details["estimated_wait_ms"] / 1000
    return details


def labels(response: requests.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return sorted(face["label"] for face in response.json()["faces"])


def enrol_obama(served: Served) -> None:
    person = served.post("/api/people/", json={"name": "obama"}).json()["id"]
    photos = [("image", (p.name, p.read_bytes(), "image/jpeg")) for p in sorted((TRAIN / "obama").iterdir())]
    response = served.post(f"/api/people/{person}/faces/", files=photos, data={"force": "true"})
    assert response.status_code == 201, response.text


@pytest.mark.django_db(transaction=True)
def test_http_requests_are_batched_and_answered_each_their_own(serve, engine):
    gate = Gate(engine)
    served = serve(gate)
    enrol_obama(served)
    photos = [OBAMA, TEST / "johnsnow_test1.jpg", TEST / "obama_and_biden.jpg", OBAMA]
    alone = [labels(served.recognize(p).result()) for p in photos]  # one request at a time
    assert alone[0] == ["obama"] and "obama" in alone[2] and alone[1] == ["unknown"]
    gate.opened.clear()
    first = served.recognize(OBAMA)
    waiting(served.queue, 0, running=1)
    rest = [served.recognize(p) for p in photos]
    waiting(served.queue, len(photos))
    gate.opened.set()
    assert labels(first.result()) == ["obama"]
    assert [labels(f.result()) for f in rest] == alone  # each answered its own, as alone
    sizes = served.queue.snapshot()["batch_sizes"]
    assert sizes[str(len(photos))] == 1  # the four requests: one engine call
    stats = served.session.get(f"{served.base}/api/stats/", timeout=60).json()["serving"]
    assert stats["queues"]["recognition"]["batch_sizes"] == sizes
    assert stats["lanes"]["engine"]["served"] == 10 and stats["lanes"]["light"]["served"] >= 2  # enrolment: engine


@pytest.mark.django_db(transaction=True)
def test_a_full_queue_is_refused_at_once(serve, engine):
    gate = Gate(engine)
    served = serve(gate, max_images=1, queue_max=1)
    gate.opened.clear()
    running = served.recognize(OBAMA)
    waiting(served.queue, 0, running=1)
    queued = served.recognize(OBAMA)
    waiting(served.queue, 1)
    refused = served.recognize(OBAMA).result()  # answered while the gate is still closed
    overloaded(refused, "queue_full")
    assert not running.done() and not queued.done()
    gate.opened.set()
    assert labels(running.result()) == labels(queued.result()) == ["unknown"]
    assert served.queue.snapshot()["refusals"] == {"queue_full": 1}
    metrics = requests.get(f"{served.base}/metrics", timeout=60).text
    assert 'facerec_serving_refusals_total{queue="recognition",reason="queue_full"}' in metrics
    assert "facerec_serving_batch_images_bucket" in metrics and "facerec_serving_queue_wait_seconds" in metrics


@pytest.mark.django_db(transaction=True)
def test_a_request_waiting_for_an_engine_thread_counts_in_the_queue(serve, settings, engine):
    settings.SERVING_ENGINE_THREADS = 1
    gate = Gate(engine)
    served = serve(gate, queue_max=1)
    gate.opened.clear()
    running = served.recognize(OBAMA)  # the only engine thread, held at the gate
    waiting(served.queue, 0, running=1)
    for_a_thread = served.recognize(OBAMA)
    wait_for(lambda: served.app.lanes().engine.backlog() == (1, True), timeout=60, what="one waiting for a thread")
    details = overloaded(served.recognize(OBAMA).result(), "queue_full")  # refused before its view ran
    assert details["estimated_wait_ms"] >= 0 and not for_a_thread.done()
    gate.opened.set()
    assert running.result().status_code == for_a_thread.result().status_code == 200


@pytest.mark.django_db(transaction=True)
def test_a_wait_estimated_over_the_limit_is_refused_at_once(serve, engine):
    gate = Gate(engine)
    served = serve(gate, max_images=64, max_wait_ms=500)
    measured = served.recognize(*[OBAMA] * 4, path="/api/faces/batch-recognize/").result()
    assert measured.status_code == 200, measured.text
    rate = served.queue.snapshot()["images_per_second"]
    if 16 / rate < 1.5:
        pytest.skip(f"the engine runs {rate} images/s here: 16 images would not outlast the limit by far")
    gate.opened.clear()
    long_batch = served.recognize(*[OBAMA] * 16, path="/api/faces/batch-recognize/")
    waiting(served.queue, 0, running=16)  # estimated to take 16 / rate seconds: well over 0.5 s
    details = overloaded(served.recognize(OBAMA).result(), "max_wait")
    assert details["estimated_wait_ms"] > 500 and not long_batch.done()
    gate.opened.set()
    assert long_batch.result().status_code == 200
    assert served.queue.snapshot()["refusals"] == {"max_wait": 1}


@pytest.mark.django_db(transaction=True)
def test_a_request_whose_wait_passes_the_limit_is_refused_then(serve, engine):
    import logging

    class Kept(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.records: list[logging.LogRecord] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.records.append(record)

    kept = Kept()
    gate = Gate(engine)
    served = serve(gate, max_images=1, max_wait_ms=300)  # nothing measured yet: nothing refused on arrival
    gate.opened.clear()
    running = served.recognize(OBAMA)
    waiting(served.queue, 0, running=1)
    logging.getLogger("core.request").addHandler(kept)
    try:
        queued = served.recognize(OBAMA)
        details = overloaded(queued.result(), "max_wait")  # its batch cannot start: the gate is closed
    finally:
        logging.getLogger("core.request").removeHandler(kept)
    assert details["estimated_wait_ms"] >= 300 and not running.done()
    logged = [r for r in kept.records if getattr(r, "status", None) == 503]
    assert [r.levelname for r in logged] == ["WARNING"]  # the request log's line: a refusal, not an error
    gate.opened.set()
    assert running.result().status_code == 200


@pytest.mark.django_db(transaction=True)
def test_light_requests_are_answered_while_every_engine_thread_waits(serve, engine):
    """Every engine thread is taken (held at the gate) and more requests wait for one: people are
    created, listed, the health and stats answered meanwhile, and none of these requests holds a
    database connection while it waits (the pool cannot run dry: DB_POOL_MAX is 4 by default)."""
    gate = Gate(engine)
    served = serve(gate, max_images=1)
    enrol_obama(served)
    before = open_connections()
    gate.opened.clear()
    engine_requests = [served.recognize(OBAMA) for _ in range(10)]  # 8 threads: 1 running, 7 queued, 2 waiting
    waiting(served.queue, 7, running=1)
    wait_for(lambda: served.app.lanes().engine.backlog() == (2, True), timeout=60, what="two waiting for a thread")
    assert open_connections() <= before, "requests waiting for the engine hold database connections"
    light = [served.pool.submit(served.post, "/api/people/", json={"name": f"person {i}"}) for i in range(12)]
    assert [f.result().status_code for f in light] == [201] * 12
    assert served.session.get(f"{served.base}/api/health/", timeout=60).status_code == 200
    assert served.session.get(f"{served.base}/api/people/", timeout=60).json()["count"] == 13
    assert not any(f.done() for f in engine_requests)  # all still held: the light ones went first
    gate.opened.set()
    assert [labels(f.result()) for f in engine_requests] == [["obama"]] * 10


@pytest.mark.django_db(transaction=True)
def test_a_request_whose_client_left_is_not_analysed(serve, engine):
    import socket

    gate = Gate(engine)
    served = serve(gate, max_images=1)
    gate.opened.clear()
    running = served.recognize(OBAMA)
    waiting(served.queue, 0, running=1)
    body = (b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"o.jpg\"\r\n"
            b"Content-Type: image/jpeg\r\n\r\n" + OBAMA.read_bytes() + b"\r\n--b--\r\n")
    token = served.session.headers["Authorization"]
    head = (f"POST /api/faces/recognize/ HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\nAuthorization: {token}\r\n"
            f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", served.port)) as client:
        client.sendall(head + body)
        waiting(served.queue, 1)
    engine_lane = served.app.lanes().engine
    wait_for(lambda: engine_lane.snapshot()["abandoned"] == 1, timeout=60, what="the disconnection noticed")
    gate.opened.set()
    assert running.result().status_code == 200
    waiting(served.queue, 0, running=0)
    assert served.queue.snapshot()["batch_sizes"] == {"1": 1}  # the running request's batch alone


@pytest.mark.django_db(transaction=True)
def test_bad_input_is_still_a_4xx_through_the_engine_lane(serve, engine):
    served = serve(Gate(engine))
    files = {"image": ("x.jpg", b"not an image at all", "image/jpeg")}
    response = served.post("/api/faces/recognize/", files=files)
    assert response.status_code == 400 and response.json()["error"]["code"] == "not_an_image"
    response = served.post("/api/faces/recognize/", files={"picture": ("n.jpg", OBAMA.read_bytes(), "image/jpeg")})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid"  # no "image" field
    response = served.post("/api/faces/verify/", files={"image_a": ("a.jpg", OBAMA.read_bytes(), "image/jpeg"),
                                                         "image_b": ("b.jpg", b"\xff\xd8 broken", "image/jpeg")})
    assert 400 <= response.status_code < 500 and response.json()["success"] is False
    lanes = served.app.lanes()
    assert lanes.engine.snapshot()["served"] == 3
    person = served.post("/api/people/", json={"name": "someone"}).json()["id"]
    assert served.session.get(f"{served.base}/api/people/{person}/faces/", timeout=60).status_code == 200
    assert lanes.engine.snapshot()["served"] == 3  # a person's faces listed on the light lane, enrolment not


def open_connections() -> int:
    """Database connections held now, by any thread of this process: Django's connection objects
    (one per thread and database) holding an open connection (checked out of the pool, on
    PostgreSQL). Counted from the objects: SQLite keeps a closed connection's file open while
    another connection of the process holds a lock on it."""
    import gc

    from django.db.backends.base.base import BaseDatabaseWrapper

    return sum(1 for item in gc.get_objects()
               if issubclass(type(item), BaseDatabaseWrapper) and item.connection is not None)
