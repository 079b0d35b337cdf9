"""Load test: the production server (gunicorn, config.settings.production) on PostgreSQL, Redis and a
real Celery worker, on loopback, under concurrent recognising and enrolling clients.

    .venv/bin/python loadtest/run.py [--seconds 60] [--clients 50] [--enrollers 5]   (make loadtest)

It creates a fresh database (dropped afterwards), a staff user and token, enrols the people of
tests/data/people/train (gallery "base"), then for --seconds runs --clients threads recognising the
photos of tests/data/people/test in that gallery and --enrollers threads creating new people
(gallery "load") and enrolling one photo each, synchronously and through Celery in turn (photos
from tests/data, ../shared/faces/people and ../shared/lfw-dev/images, where present). It prints
throughput, latency percentiles and errors per kind of request, then checks:

- every answer was right: each recognition names the people it named before the load started;
- every enrolled face is in the database, encoded;
- every gunicorn worker recognises every enrolled person (each response names its worker's pid);
- no errors.

The exit status is 0 only when all of this holds (1 when a check fails, 2 on a setup failure or
the hard time limit).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DATA = ROOT / "tests" / "data"
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="how long the load runs (60)")
    parser.add_argument("--clients", type=int, default=50, help="recognising clients (50)")
    parser.add_argument("--enrollers", type=int, default=5, help="enrolling clients (5)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers, WEB_CONCURRENCY (2)")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432",
                        help="PostgreSQL server (trust or password in the URL)")
    parser.add_argument("--database", default="facerec_load", help="database created, then dropped (facerec_load)")
    parser.add_argument("--cache", default="redis://127.0.0.1:6379/3", help="Redis cache; FLUSHED (db 3)")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/4", help="Celery broker; FLUSHED if Redis (db 4)")
    parser.add_argument("--hard-timeout", type=float, default=0,
                        help="abort after this many seconds in all (default: --seconds + 900)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the database and the logs")
    return parser.parse_args()


# --- processes --------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Stack:
    """The server, the worker, the database and the Redis databases; torn down however the run ends."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dir = Path(tempfile.mkdtemp(prefix="facerec-load-"))
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.database_url = f"{args.postgres.rstrip('/')}/{args.database}"
        self.processes: list[tuple[str, subprocess.Popen, Path]] = []
        self.env = {k: v for k, v in os.environ.items() if k not in ("CACHE_URL", "SQLITE_PATH")}
        self.env.update({
            "DJANGO_SETTINGS_MODULE": "config.settings.production",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_SSL_REDIRECT": "false",  # plain HTTP on loopback: no TLS proxy in front
            "LOG_FORMAT": "json",
            "DATABASE_URL": self.database_url,
            "REDIS_URL": args.cache,
            "CELERY_BROKER_URL": args.broker,
            "CELERY_RESULT_BACKEND": args.cache,
            "CELERY_WORKER_CONCURRENCY": "1",
            "MEDIA_ROOT": str(self.dir / "media"),
            "STATIC_ROOT": str(self.dir / "static"),
            "WEB_CONCURRENCY": str(args.workers),
            "GUNICORN_BIND": f"127.0.0.1:{self.port}",
        })
        self.torn_down = False

    def _admin(self):
        return psycopg.connect(f"{self.args.postgres.rstrip('/')}/postgres", autocommit=True, connect_timeout=5)

    def setup(self) -> None:
        with self._admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.args.database}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{self.args.database}"')
        for url in (self.args.cache, self.args.broker):
            if url.startswith("redis"):
                redis.Redis.from_url(url, socket_connect_timeout=3).flushdb()
        (self.dir / "static").mkdir()
        self.manage("migrate", "--noinput")
        self.manage("collectstatic", "--noinput")

    def manage(self, *args: str, extra_env: dict[str, str] | None = None) -> str:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env={**self.env, **(extra_env or {})},
                              capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise SystemExit(f"manage.py {' '.join(args)} failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
        return done.stdout

    def staff_token(self) -> str:
        password = secrets.token_urlsafe(16)
        self.manage("createsuperuser", "--noinput", "--username", "loadtest", "--email", "load@example.com",
                    extra_env={"DJANGO_SUPERUSER_PASSWORD": password})
        response = requests.post(f"{self.base}/api/auth/token/", json={"username": "loadtest", "password": password},
                                 timeout=30)
        response.raise_for_status()
        return response.json()["token"]

    def spawn(self, name: str, args: list[str]) -> None:
        log = self.dir / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(args, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append((name, process, log))

    def start(self) -> None:
        # The production gunicorn.conf.py; the app is wrapped only to name the worker in a header.
        self.spawn("gunicorn", [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "loadtest.asgi:application"])
        self.spawn("celery", [str(BIN / "celery"), "-A", "config", "worker", "--concurrency", "1",
                              "--hostname", f"loadtest-{secrets.token_hex(3)}@%h", "--without-mingle",
                              "--without-gossip", "--loglevel", "INFO"])
        deadline = time.monotonic() + 180
        while True:
            self.check_alive()
            try:
                if requests.get(f"{self.base}/api/health/", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"the server did not become healthy in 180 s\n{self.tail('gunicorn')}")
            time.sleep(0.5)
        while " ready." not in (self.dir / "celery.log").read_text(errors="replace"):
            self.check_alive()
            if time.monotonic() > deadline:
                raise SystemExit(f"the Celery worker was not ready in 180 s\n{self.tail('celery')}")
            time.sleep(0.5)

    def check_alive(self) -> None:
        for name, process, _ in self.processes:
            if process.poll() is not None:
                raise SystemExit(f"{name} exited with {process.returncode}\n{self.tail(name)}")

    def tail(self, name: str, size: int = 3000) -> str:
        log = self.dir / f"{name}.log"
        return f"--- {log} ---\n" + (log.read_text(errors="replace")[-size:] if log.exists() else "")

    def log_errors(self) -> list[str]:
        """Log records at error level or above (a 500, a traceback) in the server's and worker's logs."""
        found = []
        for name, _, log in self.processes:
            for line in log.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if isinstance(record, dict) and record.get("level") in ("error", "critical"):
                        found.append(f"{name}: {record.get('message', '')[:300]}")
        return found

    def teardown(self) -> None:
        if self.torn_down:
            return
        self.torn_down = True
        for _, process, _ in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for _, process, _ in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        if self.args.keep:
            print(f"kept: database {self.args.database}, logs and media in {self.dir}")
            return
        with contextlib.suppress(Exception), self._admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.args.database}" WITH (FORCE)')
        for url in (self.args.cache, self.args.broker):
            if url.startswith("redis"):
                with contextlib.suppress(Exception):
                    redis.Redis.from_url(url, socket_connect_timeout=3).flushdb()
        shutil.rmtree(self.dir, ignore_errors=True)


# --- clients ----------------------------------------------------------------------------------

@dataclass
class Results:
    started: float = 0.0
    ended: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    refused: Counter = field(default_factory=Counter)
    pids: Counter = field(default_factory=Counter)
    enrolled: list[dict] = field(default_factory=list)  # {"person", "name", "photo", "face", "job"}
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ok(self, kind: str, seconds: float, response: requests.Response) -> None:
        with self.lock:
            self.latencies[kind].append(seconds)
            self.pids[response.headers.get("X-Worker-PID", "?")] += 1

    def error(self, kind: str, message: str) -> None:
        with self.lock:
            self.errors[kind].append(message)


class Client:
    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, **kwargs) -> tuple[requests.Response, float]:
        start = time.perf_counter()
        response = self.session.request(method, self.base + path, timeout=kwargs.pop("timeout", 180), **kwargs)
        return response, time.perf_counter() - start


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
        try:
            response, took = client.call("POST", "/api/faces/recognize/", files={"image": (path.name, data)},
                                         data={"gallery": "base"})
        except requests.RequestException as exc:
            results.error("recognize", f"{type(exc).__name__}: {exc}")
            continue
        if response.status_code != 200:
            results.error("recognize", f"{response.status_code} {response.text[:200]}")
        elif labels_of(response.json()) != expected:
            results.error("recognize", f"{path.name}: {labels_of(response.json())}, expected {expected}")
        else:
            results.ok("recognize", took, response)


def enroller(number: int, client: Client, photos, stop: threading.Event, results: Results) -> None:
    for attempt in itertools.count():
        if stop.is_set():
            return
        path = next(photos)
        name = f"load-{number}-{attempt}"
        try:
            response, took = client.call("POST", "/api/people/", json={"name": name, "galleries": ["load"]})
            if response.status_code != 201:
                results.error("create person", f"{response.status_code} {response.text[:200]}")
                continue
            results.ok("create person", took, response)
            person = response.json()["id"]
            run_async = attempt % 2 == 1
            kind = "enrol (async)" if run_async else "enrol (sync)"
            response, took = client.call("POST", f"/api/people/{person}/faces/",
                                         files={"image": (path.name, path.read_bytes())},
                                         # force: the photos are reused for many people, and the load
                                         # test measures serving, not the duplicate check.
                                         data={"largest": "true", "force": "true",
                                               **({"async": "true"} if run_async else {})})
        except requests.RequestException as exc:
            results.error("enrol", f"{type(exc).__name__}: {exc}")
            continue
        expected = 202 if run_async else 201
        if response.status_code == 422:  # no face in the photo: a refusal, not an error
            results.refused[response.json()["error"]["code"]] += 1
            continue
        if response.status_code != expected:
            results.error(kind, f"{path.name}: {response.status_code} {response.text[:200]}")
            continue
        results.ok(kind, took, response)
        body = response.json()
        face = body["results"][0]["face"]["id"] if run_async else body["id"]
        with results.lock:
            results.enrolled.append({"person": person, "name": name, "photo": path, "face": face,
                                     "job": body.get("job_id")})


# --- the run ----------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def report(results: Results, args: argparse.Namespace) -> dict:
    elapsed = results.ended - results.started
    figures = {"seconds": round(elapsed, 1), "clients": args.clients, "enrollers": args.enrollers,
               "gunicorn_workers": args.workers, "kinds": {}}
    print(f"\n== load: {elapsed:.1f} s, {args.clients} recognising + {args.enrollers} enrolling clients, "
          f"{args.workers} gunicorn workers, 1 Celery worker process ==")
    print(f"{'kind':<16}{'ok':>7}{'errors':>8}{'req/s':>9}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}")
    total_ok = 0
    for kind in sorted(set(results.latencies) | set(results.errors)):
        values = results.latencies.get(kind, [])
        errors = len(results.errors.get(kind, []))
        total_ok += len(values)
        row = {"ok": len(values), "errors": errors, "per_second": round(len(values) / elapsed, 2)}
        if values:
            row.update({f"p{q}_ms": round(percentile(values, q) * 1000) for q in (50, 95, 99)})
        figures["kinds"][kind] = row
        print(f"{kind:<16}{row['ok']:>7}{errors:>8}{row['per_second']:>9.2f}"
              + "".join(f"{row.get(f'p{q}_ms', '-'):>10}" for q in (50, 95, 99)))
    figures["total_per_second"] = round(total_ok / elapsed, 2)
    print(f"{'all':<16}{total_ok:>7}{sum(len(v) for v in results.errors.values()):>8}"
          f"{figures['total_per_second']:>9.2f}")
    print(f"answers per gunicorn worker pid: {dict(results.pids)}")
    if results.refused:
        print(f"photos refused at enrolment (no face found; not errors): {dict(results.refused)}")
    for kind, messages in results.errors.items():
        print(f"errors ({kind}), first {min(5, len(messages))} of {len(messages)}:")
        for message in messages[:5]:
            print(f"  {message}")
    figures["refused"] = dict(results.refused)
    figures["errors"] = {kind: messages[:5] for kind, messages in results.errors.items()}
    return figures


def wait_for_jobs(client: Client, results: Results, limit: float) -> list[str]:
    problems = []
    deadline = time.monotonic() + limit
    for job in {e["job"] for e in results.enrolled if e["job"]}:
        while True:
            body = client.call("GET", f"/api/jobs/{job}/")[0].json()
            if body["state"] in ("succeeded", "failed"):
                if body["state"] != "succeeded" or body["failed"]:
                    problems.append(f"job {job}: {body['state']}, {body['message']}")
                break
            if time.monotonic() > deadline:
                problems.append(f"job {job} still {body['state']} after {limit:.0f} s")
                break
            time.sleep(0.5)
    return problems


def verify(stack: Stack, client: Client, results: Results, base_faces: int) -> list[str]:
    problems = wait_for_jobs(client, results, limit=300)
    # In the database: every enrolled face, encoded.
    with psycopg.connect(stack.database_url, connect_timeout=5) as db:
        statuses = dict(db.execute("SELECT status, count(*) FROM people_face GROUP BY status").fetchall())
    expected = base_faces + len(results.enrolled)
    if statuses != {"encoded": expected}:
        problems.append(f"faces in the database by status: {statuses}; expected {{'encoded': {expected}}}")
    print(f"database: {statuses} ({base_faces} base + {len(results.enrolled)} enrolled under load)")

    # Every worker recognises every enrolled person: batches of photos, sent on new connections
    # until each worker pid has answered each batch.
    pids = {int(pid) for pid in results.pids if pid.isdigit()}
    if len(pids) < stack.args.workers:
        problems.append(f"only worker pids {sorted(pids)} answered under load; {stack.args.workers} expected")
    batches = [results.enrolled[i:i + 32] for i in range(0, len(results.enrolled), 32)]
    checked = Counter()
    for batch in batches:
        seen: set[int] = set()
        for _ in range(40):
            files = [("images", (e["photo"].name, e["photo"].read_bytes())) for e in batch]
            response, _ = client.call("POST", "/api/faces/batch-recognize/", files=files,
                                      headers={"Connection": "close"},
                                      data={"gallery": "load", "match_count": "100", "return_all_matches": "true"})
            pid = int(response.headers.get("X-Worker-PID", "0"))
            if response.status_code != 200:
                problems.append(f"verification batch: {response.status_code} {response.text[:200]}")
                break
            for entry, result in zip(batch, response.json()["results"], strict=True):
                found = {m["person_id"] for m in result["faces"][0]["matches"]} if result.get("faces") else set()
                if entry["person"] not in found:
                    problems.append(f"worker {pid} does not recognise {entry['name']} ({entry['photo'].name})")
            seen.add(pid)
            checked[pid] += len(batch)
            if pids <= seen:
                break
        if not pids <= seen:
            problems.append(f"workers {sorted(pids - seen)} never answered a verification request")
    print(f"recognition of every enrolled person, per worker pid: {dict(checked)}")
    return problems


def main() -> int:
    args = parse_args()
    stack = Stack(args)
    limit = args.hard_timeout or args.seconds + 900

    def abort() -> None:
        print(f"\nHARD TIMEOUT: {limit:.0f} s; stopping everything", flush=True)
        stack.teardown()
        os._exit(2)

    watchdog = threading.Timer(limit, abort)
    watchdog.daemon = True
    watchdog.start()
    try:
        return run(stack, args)
    except SystemExit as exc:
        print(f"SETUP FAILED: {exc}", file=sys.stderr)
        return 2
    finally:
        watchdog.cancel()
        stack.teardown()


def run(stack: Stack, args: argparse.Namespace) -> int:
    print(f"setting up: database {args.database}, cache {args.cache}, broker {args.broker}, port {stack.port}")
    stack.setup()
    stack.start()
    token = stack.staff_token()
    admin = Client(stack.base, token)
    for slug in ("base", "load"):
        response, _ = admin.call("POST", "/api/galleries/", json={"name": slug, "slug": slug})
        assert response.status_code == 201, response.text
    train = DATA / "people" / "train"
    base_faces = 0
    for folder in sorted(p for p in train.iterdir() if p.is_dir()):
        person = admin.call("POST", "/api/people/", json={"name": folder.name, "galleries": ["base"]})[0].json()["id"]
        files = [("image", (p.name, p.read_bytes())) for p in photo_files(folder)]
        response, _ = admin.call("POST", f"/api/people/{person}/faces/", files=files)
        assert response.status_code == 201, response.text
        base_faces += len(files)
    # What each probe names before the load: the load must not change a single answer. Each worker
    # answers each probe once here, which also loads its models before the clock starts.
    probes = []
    for path in photo_files(DATA / "people" / "test"):
        answers, pids = set(), set()
        for _ in range(20 * args.workers):
            response, _ = admin.call("POST", "/api/faces/recognize/", files={"image": (path.name, path.read_bytes())},
                                     data={"gallery": "base"}, headers={"Connection": "close"})
            assert response.status_code == 200, response.text
            answers.add(tuple(labels_of(response.json())))
            pids.add(response.headers["X-Worker-PID"])
            if len(pids) == args.workers:
                break
        if len(answers) != 1 or len(pids) != args.workers:
            raise SystemExit(f"{path.name}: before the load, workers {sorted(pids)} answered {answers}")
        probes.append((path, path.read_bytes(), list(answers.pop())))
    print("before the load: " + ", ".join(f"{p.name} -> {e}" for p, _, e in probes))

    pool = photo_files(DATA, ROOT.parent / "shared" / "faces" / "people", ROOT.parent / "shared" / "lfw-dev" / "images")
    random.Random(0).shuffle(pool)
    photos_lock = threading.Lock()
    cycle = itertools.cycle(pool)

    def next_photo():
        with photos_lock:
            return next(cycle)

    photos = iter(next_photo, None)
    print(f"enrolment photos: {len(pool)}; load: {args.seconds:.0f} s")
    results, stop = Results(), threading.Event()
    threads = [threading.Thread(target=recognizer, args=(Client(stack.base, token), probes, stop, results))
               for _ in range(args.clients)]
    threads += [threading.Thread(target=enroller, args=(n, Client(stack.base, token), photos, stop, results))
                for n in range(args.enrollers)]
    results.started = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(args.seconds)
    stop.set()
    for thread in threads:
        thread.join(timeout=300)
    results.ended = time.monotonic()
    stack.check_alive()

    figures = report(results, args)
    problems = verify(stack, admin, results, base_faces)
    problems += [f"log: {line}" for line in stack.log_errors()[:10]]
    errors = sum(len(v) for v in results.errors.values())
    if errors:
        problems.append(f"{errors} errors under load")
    figures["problems"] = problems
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    if problems:
        print("\nLOAD TEST FAILED:")
        for problem in problems[:20]:
            print(f"  {problem}")
        return 1
    print("\nLOAD TEST PASSED: every answer right, every enrolled face encoded and recognised by every worker, "
          "0 errors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
