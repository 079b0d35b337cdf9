"""Real processes for the tests against services and the fault tests: API servers (gunicorn under
the production settings), Celery workers, and private Redis and PostgreSQL instances to stop and
start. Each process runs in a session of its own and is ended with its whole group; every wait is
bounded."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SECRET_KEY = secrets.token_urlsafe(50)
_EMPTY_STATIC = tempfile.mkdtemp(prefix="facerec-static-")
# This run's own variables that a subprocess must not inherit: it gets exactly what the test says.
NOT_INHERITED = {"DATABASE_URL", "REDIS_URL", "CACHE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND",
                 "SQLITE_PATH", "DJANGO_SETTINGS_MODULE", "SECRET_KEY", "ALLOWED_HOSTS", "LOG_FORMAT", "DEBUG",
                 "WEB_CONCURRENCY", "GUNICORN_BIND", "MEDIA_ROOT", "STATIC_ROOT"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.25,
             detail: Callable[[], str] = lambda: "") -> Any:
    """Poll ``check`` until it returns something truthy (returned); fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s. {detail()}")
        time.sleep(interval)


def service_env(settings=None, **variables: str) -> dict[str, str]:
    """A subprocess's environment: the production settings on loopback (plain HTTP), this test's
    database and media folder when ``settings`` is given, no cache or broker unless named."""
    from conftest import database_env

    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    env.update({
        "DJANGO_SETTINGS_MODULE": "config.settings.production", "SECRET_KEY": SECRET_KEY,
        "ALLOWED_HOSTS": "127.0.0.1", "SECURE_SSL_REDIRECT": "false", "LOG_FORMAT": "json",
        "THROTTLE_USER": "1000000/minute", "REDIS_URL": "", "CACHE_URL": "", "CELERY_BROKER_URL": "",
        "STATIC_ROOT": _EMPTY_STATIC,  # nothing static is served to these tests
    })
    if settings is not None:
        env.update(database_env(settings), MEDIA_ROOT=str(settings.MEDIA_ROOT))
    env.update(variables)
    if "FACE_INDEX_SHARED_DIR" not in variables:  # production shares one index per machine: beside the media, not var/
        media = Path(env.get("MEDIA_ROOT") or tempfile.gettempdir())
        env["FACE_INDEX_SHARED_DIR"] = str(media.parent / "index-shared")
    return env


class Process:
    """A subprocess in its own session, its output (stdout and stderr) in ``log``."""

    def __init__(self, name: str, args: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        with log.open("ab") as out:
            self.popen = subprocess.Popen(list(args), cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, size: int = 3000) -> str:
        return f"[{self.name} log] " + self.log.read_text(errors="replace")[-size:]

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def kill(self) -> None:
        """SIGKILL to the whole group: the process and every child it started."""
        self.signal_group(signal.SIGKILL)
        self.popen.wait(timeout=30)

    def stop(self, timeout: float = 30) -> None:
        if self.popen.poll() is None:
            self.signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.signal_group(signal.SIGKILL)  # a child left behind by a dead parent


class Processes:
    """Everything a test started, stopped in reverse order however the test ends."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def add(self, item):
        self.items.append(item)
        return item

    def stop_all(self) -> None:
        for item in reversed(self.items):
            with contextlib.suppress(Exception):
                item.stop()
        self.items.clear()


def wait_answering(server, timeout: float = 120):
    """Wait until a server process (with ``base``, its URL) answers its health check; returns it."""

    def answers():
        assert server.alive(), f"{server.name} exited. {server.log_tail()}"
        try:
            return requests.get(f"{server.base}/api/health/", timeout=5).status_code in (200, 503)
        except requests.RequestException:
            return False

    wait_for(answers, timeout=timeout, what=f"{server.name} answering", detail=server.log_tail)
    return server


class ApiServer(Process):
    """`gunicorn -c gunicorn.conf.py` (what `make serve` runs) on a free loopback port."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path, *, workers: int = 1,
                 app: str | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**env, "GUNICORN_BIND": f"127.0.0.1:{self.port}", "WEB_CONCURRENCY": str(workers)}
        args = [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", *([app] if app else [])]
        super().__init__(name, args, env, log_dir / f"{name}.log")

    def wait_ready(self, timeout: float = 120) -> ApiServer:
        return wait_answering(self, timeout)

    def workers_booted(self) -> int:
        """How many worker processes gunicorn has booted so far (more than asked: one was replaced)."""
        return self.log.read_text(errors="replace").count("Booting worker with pid")


class CeleryWorker(Process):
    """`celery -A config worker` (what `make worker` runs) on ``broker``."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path, *, broker: str, pool: str = "prefork",
                 concurrency: int = 1) -> None:
        args = [str(BIN / "celery"), "-A", "config", "worker", "--pool", pool, "--concurrency", str(concurrency),
                "--hostname", f"{name}-{secrets.token_hex(3)}@%h", "--without-mingle", "--without-gossip",
                "--loglevel", "INFO"]
        super().__init__(name, args, {**env, "CELERY_BROKER_URL": broker}, log_dir / f"{name}.log")

    def wait_ready(self, timeout: float = 120) -> CeleryWorker:
        def ready():
            assert self.alive(), f"{self.name} exited. {self.log_tail()}"
            return " ready." in self.log.read_text(errors="replace")

        wait_for(ready, timeout=timeout, what=f"{self.name} ready", detail=self.log_tail)
        return self

    def pool_children(self) -> list[int]:
        done = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.pid)], capture_output=True, text=True,
                              timeout=10)
        return [int(pid) for pid in done.stdout.split()]


def purge_broker(url: str) -> None:
    """Drop whatever an earlier run left in the broker's default queue."""
    if url.startswith("redis"):
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=3).flushdb()
        return
    from kombu import Connection

    with Connection(url, connect_timeout=5) as connection:
        channel = connection.channel()
        try:
            channel.queue_purge("celery")
        except Exception:  # noqa: BLE001 - no such queue yet (its channel is closed with it)
            pass


class Api:
    """A client of one API server, authenticated by a token."""

    def __init__(self, base: str, token: str, timeout: float = 60) -> None:
        self.base, self.timeout = base, timeout
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        return self.session.request(method, self.base + path, **kwargs)

    def create_person(self, name: str) -> int:
        response = self.request("POST", "/api/people/", json={"name": name})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def enrol(self, person_id: int, photos: Sequence[Path], *, run_async: bool = False,
              force: bool = False) -> requests.Response:
        files = [("image", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]
        data = {"async": "true"} if run_async else {}
        if force:  # over the quality gate and the duplicate check (the same photo for several people)
            data["force"] = "true"
        return self.request("POST", f"/api/people/{person_id}/faces/", files=files, data=data)

    def recognize(self, photo: Path, **data) -> requests.Response:
        return self.request("POST", "/api/faces/recognize/", files={"image": (photo.name, photo.read_bytes())},
                            data=data)

    def labels(self, photo: Path) -> list[str]:
        response = self.recognize(photo)
        assert response.status_code == 200, response.text
        return [face["label"] for face in response.json()["faces"]]

    def names_matched(self, photo: Path, count: int = 50) -> set[str]:
        """Every person the index returns for the photo's faces, above the threshold or not."""
        response = self.recognize(photo, match_count=str(count), return_all_matches="true")
        assert response.status_code == 200, response.text
        return {m["person_name"] for face in response.json()["faces"] for m in face["matches"]}


def staff_token(username: str = "ops") -> str:
    """A staff user and API token in this test's database (committed: transactional tests)."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    user = get_user_model().objects.create_user(username, password=secrets.token_urlsafe(12), is_staff=True)
    return Token.objects.create(user=user).key


# --- private services to stop and start -------------------------------------------------------

class PrivateRedis:
    """A throw-away redis-server (no persistence) on a free port: the machine's own is never touched."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = workdir
        self.process: Process | None = None

    def start(self, timeout: float = 20) -> PrivateRedis:
        import redis

        args = [shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        self.process = Process(f"redis-{self.port}", args, dict(os.environ), self.workdir / "redis.log")
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)

        def pings():
            assert self.process.alive(), self.process.log_tail()
            try:
                return client.ping()
            except redis.ConnectionError:
                return False

        wait_for(pings, timeout=timeout, what="private redis-server up")
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=10)  # SIGTERM: redis-server shuts down (nothing to save)
            self.process = None


def _as_postgres(args: Sequence[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the postgres user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return list(args)


def postgres_bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(found[-1]) if found else (shutil.which(name) or name)


class PrivatePostgres:
    """A throw-away PostgreSQL cluster (initdb, trust auth) on a free port, to stop and start."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="facerec-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        done = subprocess.run(_as_postgres(args), capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, cwd=self.dir)
        assert done.returncode == 0, f"{' '.join(args)}: {done.stdout}{done.stderr}"
        return done

    def init(self) -> PrivatePostgres:
        self._run(postgres_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync", timeout=120)
        return self

    def start(self) -> PrivatePostgres:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(postgres_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"),
                  "-w", "-t", "60", "start", timeout=90)
        return self

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(postgres_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", timeout=90)

    def createdb(self, name: str) -> str:
        self._run(postgres_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def remove(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def manage(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"manage.py {' '.join(args)}: {done.stdout[-2000:]}{done.stderr[-3000:]}"
    return done
