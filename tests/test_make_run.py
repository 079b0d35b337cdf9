"""`make run`, the first of the two commands: one process serves HTTP and the live WebSocket
(uvicorn), a camera worker runs beside it on the same SQLite file, and stopping `make run` stops
both. Real processes, a real video camera, the real weights."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest
import requests
import websocket

from face_engine.bench.scene import OBAMA_1, Entry, build_scene
from tests.processes import ROOT, free_port, wait_for

pytestmark = pytest.mark.slow


def test_make_run_serves_http_and_websockets_with_a_camera_worker(tmp_path):
    video = tmp_path / "videos" / "door.mp4"
    video.parent.mkdir()
    build_scene(video, script=[Entry(OBAMA_1, -0.5, 60, "left", 120, slide=0.5)], width=640, height=360, duration=3)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_", "REDIS_", "CACHE_"))}
    env.update(SQLITE_PATH=str(tmp_path / "db.sqlite3"), MEDIA_ROOT=str(tmp_path / "media"),
               CAMERA_FILE_ROOT=str(video.parent), CAMERA_LEASE_SECONDS="3", CELERY_BROKER_URL="")
    log = tmp_path / "make-run.log"
    with log.open("wb") as out:
        make = subprocess.Popen(["make", "run", f"PORT={port}"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        def healthy():
            assert make.poll() is None, log.read_text()[-3000:]
            try:
                return requests.get(f"{base}/api/health/", timeout=5).status_code == 200
            except requests.RequestException:
                return False

        wait_for(healthy, timeout=180, what="make run answering", detail=lambda: log.read_text()[-3000:])
        token = re.search(r"token:\s+(\w+)", log.read_text()).group(1)
        auth = {"Authorization": f"Bearer {token}"}
        assert requests.get(f"{base}/live/", timeout=10, allow_redirects=False).status_code == 302
        assert requests.get(f"{base}/static/streams/live.js", timeout=10).status_code == 200  # static served

        created = requests.post(f"{base}/api/cameras/", headers=auth, timeout=10,
                                json={"name": "door", "source_url": "file://door.mp4?loop=1"})
        assert created.status_code == 201, created.text

        def connected():
            status = requests.get(f"{base}/api/cameras/{created.json()['id']}/", headers=auth, timeout=10).json()
            return status["status"]["state"] == "connected" and status["status"]["frames_analysed"] > 0

        wait_for(connected, timeout=120, what="the camera worker running the camera",
                 detail=lambda: log.read_text()[-3000:])

        client = websocket.create_connection(f"ws://127.0.0.1:{port}/ws/live/?token={token}", timeout=30)
        try:
            assert json.loads(client.recv())["type"] == "ready"
            client.send(json.dumps({"type": "ping"}))
            assert json.loads(client.recv()) == {"type": "pong"}
        finally:
            client.close()
    finally:
        os.killpg(make.pid, signal.SIGTERM)
        try:
            make.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait(timeout=30)
    time.sleep(1)
    leftovers = subprocess.run(["pgrep", "-f", f"--port {port}|run_cameras"], capture_output=True, text=True)
    survivors = [pid for pid in leftovers.stdout.split() if int(pid) != os.getpid()]
    with_env = [pid for pid in survivors if str(tmp_path) in _environ(pid)]
    assert with_env == [], f"processes of make run still running: {with_env}"


def _environ(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""
