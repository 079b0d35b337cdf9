"""Serving benchmark: how quickly a light request (create a person) is answered while recognitions
saturate the machine, the recognitions per second against the engine's own batch throughput, and
the 503s.

    .venv/bin/python loadtest/serving_bench.py [--clients 50] [--seconds 60] [--workers 2]
        [--env RECOGNITION_MAX_WAIT_MS=1000 ...] [--baseline REV] [--database-url postgres://...]

It measures the engine first, alone (``pipeline().analyze_bytes`` on batches of the probe photos,
one process), then starts the production server as loadtest/run.py does (gunicorn with
gunicorn.conf.py, config.settings.production, the app wrapped by loadtest/asgi.py to name each
answer's worker), on a throw-away SQLite database (or a fresh PostgreSQL one with
--database-url), enrols the people of tests/data/people/train, and runs --clients threads
recognising the photos of tests/data/people/test and one thread creating people (POST
/api/people/, JSON) one after the other. A refused recognition (503) must carry Retry-After and
the code "overloaded"; its client waits that long. Every recognition answered must name the
people it named before the load. --baseline REV serves the code of a git revision (git archive)
instead of the working tree: serving as it was before a change.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from loadtest.machine import cpu_by_nice, machine_busy, percentiles, wait_quiet  # noqa: E402

BIN = Path(sys.executable).parent
PROBES = sorted((ROOT / "tests" / "data" / "people" / "test").glob("*.jpg"))
TRAIN = ROOT / "tests" / "data" / "people" / "train"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50, help="recognising clients (50)")
    parser.add_argument("--seconds", type=float, default=60, help="measured seconds (60), after --ramp")
    parser.add_argument("--ramp", type=float, default=10, help="seconds of load before measuring (10)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument("--person-pause", type=float, default=0.5, help="seconds between two creations (0.5)")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server (repeatable)")
    parser.add_argument("--baseline", metavar="REV", help="serve this git revision's code instead (git archive)")
    parser.add_argument("--database-url", default="", help="a PostgreSQL server URL: a fresh database on it")
    parser.add_argument("--engine-batch", type=int, default=8, help="batch of the engine-alone figure (8)")
    parser.add_argument("--engine-seconds", type=float, default=20, help="seconds of the engine-alone figure")
    parser.add_argument("--no-engine", action="store_true", help="skip the engine-alone figure")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--quiet-wait", type=float, default=600, help="longest wait for a quiet machine (600 s)")
    parser.add_argument("--engine-only", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def engine_only(batch: int, seconds: float) -> None:
    """In a process of its own: images/s of the engine on batches of the probe photos."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
    import django

    django.setup()
    from people.engine import pipeline

    engine = pipeline()
    engine.load()
    photos = [p.read_bytes() for p in PROBES]
    engine.analyze_bytes(photos)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or done < 2 * batch:
        engine.analyze_bytes([photos[(done + i) % len(photos)] for i in range(batch)])
        done += batch
    elapsed = time.perf_counter() - start
    print(json.dumps({"batch": batch, "images": done, "seconds": elapsed, "images_per_second": done / elapsed}))


class Server:
    def __init__(self, args: argparse.Namespace) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="facerec-serving-"))
        self.code = ROOT
        if args.baseline:
            self.code = self.dir / "code"
            self.code.mkdir()
            archive = subprocess.run(["git", "archive", args.baseline], cwd=ROOT, capture_output=True,
                                     check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(self.code)], input=archive, check=True)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.database = ""
        self.admin_url = args.database_url.rstrip("/")
        self.env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CACHE_URL", "REDIS_URL")}
        self.env.update({
            "DJANGO_SETTINGS_MODULE": "config.settings.production", "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "127.0.0.1", "SECURE_SSL_REDIRECT": "false", "LOG_FORMAT": "json",
            "THROTTLE_USER": "1000000/minute", "SQLITE_PATH": str(self.dir / "db.sqlite3"),
            "MEDIA_ROOT": str(self.dir / "media"), "STATIC_ROOT": str(self.dir / "static"),
            "WEB_CONCURRENCY": str(args.workers), "GUNICORN_BIND": f"127.0.0.1:{self.port}",
            "PYTHONPATH": str(self.code),
        })
        if self.admin_url:
            self.database = f"facerec_serving_{secrets.token_hex(3)}"
            self.admin_sql(f'CREATE DATABASE "{self.database}"')
            self.env["DATABASE_URL"] = f"{self.admin_url}/{self.database}"
        self.env.update(dict(item.split("=", 1) for item in args.env))
        (self.dir / "static").mkdir()
        self.process: subprocess.Popen[bytes] | None = None

    def manage(self, *args: str, **extra: str) -> str:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=self.code, env={**self.env, **extra},
                              capture_output=True, text=True, timeout=300)
        if done.returncode:
            raise SystemExit(f"manage.py {args[0]}: {done.stdout[-1500:]}{done.stderr[-3000:]}")
        return done.stdout

    def start(self) -> None:
        self.manage("migrate", "--noinput")
        self.manage("createsuperuser", "--noinput", "--username", "bench", "--email", "b@example.com",
                    DJANGO_SUPERUSER_PASSWORD="bench-pass-123")
        with (self.dir / "server.log").open("wb") as log:
            self.process = subprocess.Popen(
                [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "loadtest.asgi:application"], cwd=self.code,
                env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 180
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited: {(self.dir / 'server.log').read_text()[-3000:]}")
            try:
                if requests.get(f"{self.base}/api/health/", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server did not answer in 180 s")
            time.sleep(0.5)

    def token(self) -> str:
        response = requests.post(f"{self.base}/api/auth/token/",
                                 json={"username": "bench", "password": "bench-pass-123"}, timeout=30)
        response.raise_for_status()
        return str(response.json()["token"])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        if self.database:
            self.admin_sql(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    def admin_sql(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(f"{self.admin_url}/postgres", autocommit=True) as admin:
            admin.execute(sql)


def labels(body: dict[str, Any]) -> list[str]:
    return sorted(face["label"] for face in body["faces"])


def setup_gallery(base: str, session: requests.Session) -> None:
    for folder in sorted(p for p in TRAIN.iterdir() if p.is_dir()):
        response = session.post(f"{base}/api/people/", json={"name": folder.name}, timeout=60)
        response.raise_for_status()
        person = response.json()["id"]
        files = [("image", (p.name, p.read_bytes(), "image/jpeg")) for p in sorted(folder.iterdir())
                 if p.suffix.lower() in (".jpg", ".jpeg")]
        response = session.post(f"{base}/api/people/{person}/faces/", files=files, data={"force": "true"},
                                timeout=300)
        if response.status_code not in (200, 201, 207):
            raise SystemExit(f"enrolling {folder.name}: {response.status_code} {response.text[:300]}")


def expected(base: str, token: str, workers: int) -> dict[str, list[str]]:
    """Each probe's answer before the load, from every worker (which loads its models)."""
    answers: dict[str, list[str]] = {}
    for path in PROBES:
        seen: dict[str, list[str]] = {}
        for _ in range(40 * workers):
            response = requests.post(f"{base}/api/faces/recognize/", headers={"Authorization": f"Bearer {token}",
                                                                              "Connection": "close"},
                                     files={"image": (path.name, path.read_bytes())}, timeout=120)
            response.raise_for_status()
            seen[response.headers["X-Worker-PID"]] = labels(response.json())
            if len(seen) == workers:
                break
        if len({tuple(v) for v in seen.values()}) != 1 or len(seen) != workers:
            raise SystemExit(f"{path.name} before the load: {seen}")
        answers[path.name] = next(iter(seen.values()))
    return answers


class Load:
    def __init__(self, base: str, token: str, answers: dict[str, list[str]], start: float, end: float) -> None:
        self.base, self.token, self.answers, self.start, self.end = base, token, answers, start, end
        self.lock = threading.Lock()
        self.recognised: list[float] = []
        self.created: list[float] = []
        self.refused: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.wrong = 0
        self.stop = threading.Event()

    def session(self) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.token}"
        return session

    def measured(self, began: float) -> bool:
        return self.start <= began and time.monotonic() <= self.end

    def recogniser(self, number: int) -> None:
        session = self.session()
        photos = [(p.name, p.read_bytes()) for p in PROBES]
        turn = number
        while not self.stop.is_set():
            name, data = photos[turn % len(photos)]
            turn += 1
            began = time.monotonic()
            try:
                response = session.post(f"{self.base}/api/faces/recognize/", files={"image": (name, data)}, timeout=120)
            except requests.RequestException as exc:
                with self.lock:
                    self.errors[type(exc).__name__] += 1
                continue
            took = time.monotonic() - began
            if response.status_code == 200:
                with self.lock:
                    if labels(response.json()) != self.answers[name]:
                        self.wrong += 1
                    if self.measured(began):
                        self.recognised.append(took)
            elif response.status_code == 503 and response.json()["error"]["code"] == "overloaded":
                retry = response.headers.get("Retry-After", "")
                with self.lock:
                    if not retry.isdigit() or int(retry) < 1:
                        self.errors["503 without Retry-After"] += 1
                    if self.measured(began):
                        self.refused[response.json()["error"]["details"]["reason"]] += 1
                self.stop.wait(int(retry) if retry.isdigit() else 1)
                session.close()  # the server closes a connection idle past its keep-alive (5 s)
            else:
                with self.lock:
                    self.errors[f"{response.status_code} {response.text[:80]}"] += 1

    def creator(self, pause: float) -> None:
        session = self.session()
        count = 0
        while not self.stop.is_set():
            count += 1
            began = time.monotonic()
            try:
                response = session.post(f"{self.base}/api/people/", json={"name": f"load person {count}"}, timeout=120)
                ok = response.status_code == 201
            except requests.RequestException:
                ok = False
            took = time.monotonic() - began
            with self.lock:
                if not ok:
                    self.errors["create person failed"] += 1
                elif self.measured(began):
                    self.created.append(took)
            self.stop.wait(pause)


def serving_stats(base: str, token: str, workers: int) -> dict[str, dict[str, Any]]:
    """Each worker's /api/stats/ serving section (asked on new connections until every pid answered)."""
    found: dict[str, dict[str, Any]] = {}
    for _ in range(40 * workers):
        response = requests.get(f"{base}/api/stats/", headers={"Authorization": f"Bearer {token}",
                                                               "Connection": "close"}, timeout=60)
        if response.status_code == 200 and "serving" in response.json():
            found[response.headers["X-Worker-PID"]] = response.json()["serving"]
        if len(found) == workers or response.status_code != 200 or "serving" not in response.json():
            break
    return found


def engine_figure(args: argparse.Namespace) -> dict[str, Any]:
    """The engine alone, in a process of its own, on a quiet machine."""
    print(f"machine busy before the engine figure: {wait_quiet(longest=args.quiet_wait):.2f} cores", flush=True)
    done = subprocess.run([sys.executable, __file__, "--engine-only", "--engine-batch", str(args.engine_batch),
                           "--engine-seconds", str(args.engine_seconds)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={**os.environ, **dict(e.split("=", 1) for e in args.env)})
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    figure: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"engine alone: {figure['images_per_second']:.2f} images/s (batches of {args.engine_batch} probe photos, "
          "one process)", flush=True)
    return figure


def main() -> int:
    args = parse_args()
    if args.engine_only:
        engine_only(args.engine_batch, args.engine_seconds)
        return 0
    figures: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "cores": os.cpu_count()}
    engine = [] if args.no_engine else [engine_figure(args)]
    server = Server(args)
    try:
        server.start()
        token = server.token()
        admin = requests.Session()
        admin.headers["Authorization"] = f"Bearer {token}"
        setup_gallery(server.base, admin)
        answers = expected(server.base, token, args.workers)
        print(f"machine busy before the load: {wait_quiet(longest=args.quiet_wait):.2f} cores", flush=True)
        start = time.monotonic() + args.ramp
        load = Load(server.base, token, answers, start, start + args.seconds)
        threads = [threading.Thread(target=load.recogniser, args=(i,), daemon=True) for i in range(args.clients)]
        threads.append(threading.Thread(target=load.creator, args=(args.person_pause,), daemon=True))
        for thread in threads:
            thread.start()
        time.sleep(args.ramp)
        assert server.process is not None
        cpu_before, mine_before, machine_before = cpu_by_nice(server.process.pid), os.times(), machine_busy()
        time.sleep(args.seconds)
        cpu, mine, machine = cpu_by_nice(server.process.pid), os.times(), machine_busy()
        figures["server_cores_by_nice"] = {str(n): round((c - cpu_before.get(n, 0.0)) / args.seconds, 2)
                                           for n, c in sorted(cpu.items())}
        client = (mine.user + mine.system - mine_before.user - mine_before.system) / args.seconds
        busy = (machine[0] - machine_before[0]) / (machine[1] - machine_before[1]) * (os.cpu_count() or 1)
        others = busy - client - sum(figures["server_cores_by_nice"].values())
        figures.update(client_cores=round(client, 2), machine_cores_busy=round(busy, 2), other_cores=round(others, 2))
        load.stop.set()
        for thread in threads:
            thread.join(timeout=150)
        figures["serving"] = serving_stats(server.base, token, args.workers)
    finally:
        server.stop()
    if engine:  # again once the server is gone: this machine's speed drifts between runs
        engine.append(engine_figure(args))
        figures["engine"] = {"before": engine[0], "after": engine[1],
                             "images_per_second": (engine[0]["images_per_second"] + engine[1]["images_per_second"]) / 2}
    rate = len(load.recognised) / args.seconds
    figures.update({
        "create_person_ms": {**percentiles(load.created), "count": len(load.created)},
        "recognize_ms": {**percentiles(load.recognised), "count": len(load.recognised)},
        "recognitions_per_second": rate, "refused": dict(load.refused), "errors": dict(load.errors),
        "wrong_answers": load.wrong,
    })
    print(f"\n== {args.clients} recognising clients + 1 creating people, {args.workers} workers, {args.seconds:.0f} s "
          f"measured, {f'code of {args.baseline}' if args.baseline else 'working tree'}, env {args.env or '-'} ==")
    for kind in ("create_person_ms", "recognize_ms"):
        f = figures[kind]
        print(f"{kind[:-3]:15s} n={f['count']:5d}  " + "  ".join(
            f"{k} {f[k]:8.0f}" if f[k] is not None else f"{k} -" for k in ("p50", "p95", "p99", "max")))
    line = f"recognitions/s {rate:.2f}"
    if "engine" in figures:
        line += (f" = {100 * rate / figures['engine']['images_per_second']:.0f} % of the engine alone (the mean of "
                 f"{engine[0]['images_per_second']:.2f} before and {engine[1]['images_per_second']:.2f} after)")
    print(line)
    print(f"503 overloaded: {dict(load.refused)}; errors: {dict(load.errors) or 0}; wrong answers: {load.wrong}")
    print(f"cores used: server by thread nice value {figures['server_cores_by_nice']}, this load generator "
          f"{figures['client_cores']}, everything else {figures['other_cores']} (the machine: "
          f"{figures['machine_cores_busy']} of {os.cpu_count()})")
    for pid, stats in figures.get("serving", {}).items():
        queue = stats.get("queues", {}).get("recognition", {})
        print(f"worker {pid}: batches {queue.get('batches')} sizes {queue.get('batch_sizes')} "
              f"queue wait {queue.get('queue_wait_ms')} lanes {stats.get('lanes')}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 1 if load.wrong or load.errors else 0


if __name__ == "__main__":
    sys.exit(main())
