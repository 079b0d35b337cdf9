"""The load test's processes: the production server (gunicorn), a Celery worker, a fresh PostgreSQL
database and the Redis databases, torn down however the run ends; and the engine's own batch
throughput, measured in a process of its own with the server's environment (loadtest/engine.py)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def stop_groups(processes: list[subprocess.Popen]) -> None:
    """SIGTERM to each process's group, then SIGKILL to any still there after 30 s."""
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


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

    def engine_throughput(self, photos: list[Path], seconds: float, batch: int) -> dict:
        """The engine's batch throughput on ``photos`` (loadtest/engine.py), with the server's
        environment (the production engine settings); run before the server starts."""
        done = subprocess.run([sys.executable, "-m", "loadtest.engine", *map(str, photos), "--seconds", str(seconds),
                               "--batch", str(batch)], cwd=ROOT, env=self.env, capture_output=True, text=True,
                              timeout=600, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise SystemExit(f"the engine's throughput could not be measured:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

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
        """Log records at error level or above (a 500, a traceback) in the server's and worker's logs.

        Not the records of a 503 answer (Django logs every 5xx at error level): each 503 is judged
        where it arrives, by the client: a refusal with Retry-After is the server shedding load, and
        one without it is already counted as an error there."""
        found = []
        for name, _, log in self.processes:
            for line in log.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if not isinstance(record, dict) or record.get("level") not in ("error", "critical"):
                        continue
                    if 503 in (record.get("status"), record.get("status_code")):
                        continue
                    found.append(f"{name}: {record.get('message', '')[:300]}")
        return found

    def teardown(self) -> None:
        if self.torn_down:
            return
        self.torn_down = True
        stop_groups([process for _, process, _ in self.processes])
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
