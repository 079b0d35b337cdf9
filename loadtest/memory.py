"""Memory per API process and per camera worker at a gallery size: what each process holds (the
models and its own copy of the index, or its share of the machine's one: ``--modes``).

    .venv/bin/python -m loadtest.memory [--faces 100000 1000000] [--json FILE] [--keep]

For each size, and for an empty gallery (the baseline), it fills a throw-away SQLite database with
that many faces (synthetic unit embeddings of the current model id, shaped like benchmark_index's:
five faces a person, every person in one gallery), then starts on it, one after the other, the
production server with one worker (gunicorn, config.settings.production) and one camera worker
(`manage.py run_cameras`, no camera), and makes each load its models and index: the server with
one recognition request, the camera worker with its first heartbeat (which brings its index up to
date before it records itself in `streams_cameraworker`); each is timed from its start. Once their
memory settles it reads from /proc:

- RSS (VmRSS) and peak RSS (VmHWM: the transient peak of the load);
- PSS (smaps_rollup): each page shared with other processes (libraries) counted in part.

The index's own share is the difference with the empty gallery. Nothing else may run heavy work
meanwhile: the load's timings are printed too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import requests

from loadtest.stack import free_port, stop_groups

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
PROBE = ROOT / "tests" / "data" / "people" / "test" / "obama1.jpg"
FACES_PER_PERSON = 5
WORKER_ID = "memory-probe"
MIB = 1024 * 1024


# --- the fill (run in a process of its own: `python -m loadtest.memory --fill N`) --------------

def _insert(db: sqlite3.Connection, model, template, varying: list[str], rows) -> None:
    """Rows of ``model`` as ``template`` would be saved, with the ``varying`` fields (attnames)
    taken from each tuple of ``rows``: Django computes every other column once, sqlite3 writes
    them in bulk (the ORM's bulk_create writes about 7,000 faces/s, this about ten times more)."""
    from django.db import connection

    fields = [f for f in model._meta.concrete_fields]
    fixed = [f.get_db_prep_save(f.pre_save(template, add=True), connection) for f in fields]
    fixed = [bytes(v) if isinstance(v, memoryview) else v for v in fixed]
    where = [next(i for i, f in enumerate(fields) if f.attname == name) for name in varying]
    sql = (f'INSERT INTO "{model._meta.db_table}" ({", ".join(chr(34) + f.column + chr(34) for f in fields)}) '
           f'VALUES ({", ".join("?" for _ in fields)})')

    def full(row: tuple) -> list:
        values = list(fixed)
        for i, value in zip(where, row, strict=True):
            values[i] = value
        return values

    db.executemany(sql, (full(row) for row in rows))


def fill(faces: int, password: str) -> dict:
    import django

    django.setup(set_prefix=False)
    import numpy as np
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from face_engine.bench.search import synthetic_gallery
    from people.engine import embedding_model_id
    from people.models import Face, Gallery, Person

    get_user_model().objects.create_superuser("memory", "memory@example.com", password)
    gallery = Gallery.objects.create(name="all", slug="all")
    start = time.perf_counter()
    if faces:
        _, vectors, person_of = synthetic_gallery(faces)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        blobs = vectors.astype("<f4")
        people = int(person_of.max()) + 1
        model, now = embedding_model_id(), timezone.now()
        db = sqlite3.connect(settings.DATABASES["default"]["NAME"], isolation_level=None)
        db.execute("PRAGMA synchronous=OFF")
        db.execute("BEGIN")
        _insert(db, Person, Person(id=1, name="p0"), ["id", "name"], ((i + 1, f"p{i}") for i in range(people)))
        through = Person.galleries.through
        _insert(db, through, through(id=1, person_id=1, gallery_id=gallery.pk), ["id", "person_id"],
                ((i + 1, i + 1) for i in range(people)))
        template = Face(id=1, person_id=1, image="memory/0.jpg", sha256="0" * 64, status=Face.Status.ENCODED,
                        model=model, embedding=bytes(blobs[0].tobytes()), encoded_at=now)
        _insert(db, Face, template, ["id", "person_id", "image", "sha256", "embedding"],
                ((i + 1, int(person_of[i]) + 1, f"memory/{i}.jpg", f"{i:064x}", blobs[i].tobytes())
                 for i in range(faces)))
        db.execute("COMMIT")
        db.close()
    return {"faces": faces, "seconds": round(time.perf_counter() - start, 1)}


# --- the processes ----------------------------------------------------------------------------

def proc_memory(pid: int) -> dict:
    """RSS, peak RSS and PSS of a process, in bytes."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    rollup = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        rollup[key.strip()] = int(rest.split()[0]) * 1024
    kib = lambda key: int(status[key].split()[0]) * 1024  # noqa: E731
    return {"rss": kib("VmRSS"), "peak_rss": kib("VmHWM"), "pss": rollup["Pss"],
            "pss_anon": rollup.get("Pss_Anon", 0)}


def settle(pids: list[int], seconds: float = 3.0, limit: float = 120.0) -> None:
    """Wait until none of ``pids`` has moved its RSS by more than 1 MiB over ``seconds``."""
    history: list[list[int]] = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        history.append([proc_memory(pid)["rss"] for pid in pids])
        window = history[-int(seconds / 0.5) - 1:]
        if len(window) > seconds / 0.5 and all(max(c) - min(c) <= MIB for c in zip(*window, strict=True)):
            return
        time.sleep(0.5)


class Run:
    """One size: its database, the server and the camera worker on it."""

    def __init__(self, folder: Path, template: Path, faces: int, env: dict[str, str]) -> None:
        self.folder, self.faces = folder, faces
        self.db = folder / f"faces-{faces}.sqlite3"
        shutil.copy(template, self.db)
        self.port = free_port()
        self.env = {**env, "DATABASE_URL": f"sqlite:///{self.db}", "GUNICORN_BIND": f"127.0.0.1:{self.port}"}
        self.processes: list[subprocess.Popen] = []

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        with (self.folder / f"{name}-{self.faces}.log").open("wb") as out:
            process = subprocess.Popen(args, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        return process

    def measure(self) -> dict:
        password = secrets.token_urlsafe(16)
        filled = subprocess.run([sys.executable, "-m", "loadtest.memory", "--fill", str(self.faces)], cwd=ROOT,
                                env={**self.env, "MEMORY_PASSWORD": password}, capture_output=True, text=True,
                                timeout=3600, stdin=subprocess.DEVNULL)
        if filled.returncode != 0:
            raise SystemExit(f"filling {self.faces:,} faces failed:\n{filled.stderr[-3000:]}")
        fill_s = json.loads(filled.stdout.strip().splitlines()[-1])["seconds"]
        print(f"{self.faces:>9,} faces: written in {fill_s:.1f} s", flush=True)
        master = self.spawn("gunicorn", [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "config.asgi:application"])
        start = time.monotonic()
        base = f"http://127.0.0.1:{self.port}"
        token = self._token(base, password, master)
        for _ in range(30):  # a 503 with Retry-After (the server sheds load): again after that wait
            response = requests.post(f"{base}/api/faces/recognize/", files={"image": PROBE.read_bytes()},
                                     headers={"Authorization": f"Bearer {token}"}, timeout=900)
            if response.status_code != 503 or not response.headers.get("Retry-After", "").isdigit():
                break
            time.sleep(int(response.headers["Retry-After"]))
        if response.status_code != 200:
            raise SystemExit(f"the recognition request: {response.status_code} {response.text[:300]}")
        api_s = time.monotonic() - start
        # One after the other: each loads on both cores, and its time to ready is its own.
        start = time.monotonic()
        camera = self.spawn("cameras", [sys.executable, "manage.py", "run_cameras", "--worker-id", WORKER_ID,
                                        "--metrics-port", "0"])
        camera_s = self._camera_ready(camera, start)
        worker = int(Path(f"/proc/{master.pid}/task/{master.pid}/children").read_text().split()[0])
        settle([worker, camera.pid])
        figures = {"faces": self.faces, "fill_s": fill_s, "api_ready_s": round(api_s, 1),
                   "camera_ready_s": round(camera_s, 1), "api": proc_memory(worker), "camera": proc_memory(camera.pid)}
        print(f"{'':>9}  API process ready after {api_s:.1f} s, camera worker after {camera_s:.1f} s", flush=True)
        return figures

    def _token(self, base: str, password: str, master: subprocess.Popen) -> str:
        deadline = time.monotonic() + 180
        while True:
            if master.poll() is not None:
                raise SystemExit(f"gunicorn exited with {master.returncode}")
            with contextlib.suppress(requests.RequestException):
                response = requests.post(f"{base}/api/auth/token/", json={"username": "memory", "password": password},
                                         timeout=30)
                if response.status_code == 200:
                    return response.json()["token"]
            if time.monotonic() > deadline:
                raise SystemExit("the server did not answer in 180 s")
            time.sleep(0.5)

    def _camera_ready(self, camera: subprocess.Popen, start: float) -> float:
        """Seconds until the camera worker recorded its first heartbeat (its index is loaded by then)."""
        db = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        try:
            while not db.execute("SELECT 1 FROM streams_cameraworker WHERE name = ?", (WORKER_ID,)).fetchone():
                if camera.poll() is not None:
                    raise SystemExit(f"the camera worker exited with {camera.returncode}")
                if time.monotonic() - start > 900:
                    raise SystemExit("the camera worker did not beat in 900 s")
                time.sleep(0.5)
        finally:
            db.close()
        return time.monotonic() - start

    def stop(self) -> None:
        stop_groups(self.processes)
        self.processes.clear()
        self.db.unlink(missing_ok=True)


def environment(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("CACHE_URL", "REDIS_URL", "SQLITE_PATH", "CELERY_BROKER_URL", "DATABASE_URL")}
    (folder / "static").mkdir()
    env.update({
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "LOG_FORMAT": "json",
        "MEDIA_ROOT": str(folder / "media"),
        "STATIC_ROOT": str(folder / "static"),
        "WEB_CONCURRENCY": "1",
    })
    return env


def table(rows: list[dict]) -> None:
    base = rows[0]
    mib = lambda value: f"{value / MIB:,.0f}"  # noqa: E731
    print(f"\n{'faces':>9}  {'process':<14}{'RSS MiB':>9}{'PSS MiB':>9}{'peak RSS':>10}"
          f"{'index RSS':>11}{'index PSS':>11}{'B/face':>8}{'ready s':>9}")
    for row in rows:
        for name, label in (("api", "API worker"), ("camera", "camera worker")):
            now, empty = row[name], base[name]
            share_rss, share_pss = now["rss"] - empty["rss"], now["pss"] - empty["pss"]
            per_face = f"{share_rss / row['faces']:,.0f}" if row["faces"] else "-"
            row[name].update(index_rss=share_rss, index_pss=share_pss)
            print(f"{row['faces']:>9,}  {label:<14}{mib(now['rss']):>9}{mib(now['pss']):>9}{mib(now['peak_rss']):>10}"
                  f"{mib(share_rss) if row['faces'] else '-':>11}{mib(share_pss) if row['faces'] else '-':>11}"
                  f"{per_face:>8}{row[f'{name}_ready_s']:>9.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--modes", nargs="+", choices=["private", "shared"], default=["private", "shared"],
                        help="each process's own index, or the machine's shared snapshot (FACE_INDEX_SHARED_DIR)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the logs (the databases are always removed)")
    parser.add_argument("--fill", type=int, help=argparse.SUPPRESS)  # the fill's own process
    args = parser.parse_args()
    if args.fill is not None:
        print(json.dumps(fill(args.fill, os.environ["MEMORY_PASSWORD"])))
        return 0
    folder = Path(tempfile.mkdtemp(prefix="facerec-memory-"))
    env = environment(folder)
    template = folder / "template.sqlite3"
    migrated = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, capture_output=True,
                              env={**env, "DATABASE_URL": f"sqlite:///{template}"}, text=True, timeout=600)
    if migrated.returncode != 0:
        raise SystemExit(f"migrate failed:\n{migrated.stderr[-3000:]}")
    print(f"memory per process, {platform.node()}, {os.cpu_count()} cores, "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; logs in {folder}", flush=True)
    rows: dict[str, list[dict]] = {}
    try:
        for mode in args.modes:
            # private: each process builds its own index; shared: the second maps the first's snapshot.
            shared = str(folder / "index-shared") if mode == "shared" else ""
            for faces in [0, *args.faces]:
                print(f"{mode} index, {faces} faces", flush=True)
                run = Run(folder, template, faces, {**env, "FACE_INDEX_SHARED_DIR": shared})
                try:
                    rows.setdefault(mode, []).append(run.measure())
                finally:
                    run.stop()
    finally:
        for mode, found in rows.items():
            print(f"\n{mode} index (FACE_INDEX_SHARED_DIR {'set' if mode == 'shared' else 'empty'}):")
            table(found)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2))
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
