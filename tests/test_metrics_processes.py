"""Prometheus metrics across processes, with real processes: two writers sharing a multiprocess
folder summed by a third; gunicorn (production settings, 2 workers) summing its workers'
requests and never a previous run's; a camera worker (`run_cameras --metrics-port`) counting its
frames exactly as it writes its status, and serving them on its own port under the same access
rules as /metrics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.processes import ROOT, ApiServer, Process, Processes, free_port, service_env, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
HEALTH = {"endpoint": "api/health/", "method": "GET", "status": "200"}


def value(text: str, name: str, **labels: str) -> float:
    found = [s.value for family in text_string_to_metric_families(text) for s in family.samples
             if s.name == name and s.labels == labels]
    return found[0] if found else 0.0


def python(code: str, metrics_dir: Path, *args: str) -> str:
    """Run ``code`` in a new Python process writing its metrics into ``metrics_dir``."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


COUNT = "import sys; from core.prometheus import {metric} as m; m.labels(**{labels}).inc(int(sys.argv[1]))"
EXPOSE = "from prometheus_client import generate_latest; from core.prometheus import process_registry; " \
         "print(generate_latest(process_registry()).decode())"


def test_processes_sharing_a_multiprocess_folder_are_summed(tmp_path):
    labels = {"kind": "known", "source": "camera"}
    code = COUNT.format(metric="EVENTS", labels=labels)
    python(code, tmp_path, "2")
    python(code, tmp_path, "5")
    assert value(python(EXPOSE, tmp_path), "facerec_events_total", **labels) == 7
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert value(python(EXPOSE, elsewhere), "facerec_events_total", **labels) == 0  # none of theirs


def per_process_health_counts(metrics_dir: Path) -> dict[str, float]:
    """{pid: health requests it counted}, read from each process's own file."""
    counts = {}
    for path in metrics_dir.glob("counter_*.db"):
        for metric in MultiProcessCollector.merge([str(path)]):
            for sample in metric.samples:
                if sample.name == "facerec_http_requests_total" and sample.labels == HEALTH:
                    counts[path.stem.split("_", 1)[1]] = sample.value
    return counts


def test_gunicorn_sums_its_workers_requests_and_never_a_previous_runs(settings, tmp_path):
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    python(COUNT.format(metric="HTTP_REQUESTS", labels=HEALTH), metrics_dir, "1000")  # a previous run's file
    stale = list(metrics_dir.glob("*.db"))
    assert stale
    started = Processes()
    try:
        env = service_env(settings, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
        server = started.add(ApiServer("api", env, tmp_path, workers=2)).wait_ready()
        assert not [path for path in stale if path.exists()]  # emptied when the master started
        sent = 0  # the readiness checks above count too: read them from the workers' own files
        with ThreadPoolExecutor(8) as pool:
            def both_workers_answered() -> bool:
                nonlocal sent
                codes = list(pool.map(lambda _: requests.get(f"{server.base}/api/health/", timeout=30).status_code,
                                      range(16)))
                assert codes == [200] * 16
                sent += 16
                return len(per_process_health_counts(metrics_dir)) >= 2

            wait_for(both_workers_answered, timeout=120, what="both gunicorn workers answering", interval=0)
        counts = per_process_health_counts(metrics_dir)
        assert sum(counts.values()) >= sent and all(counts.values())
        response = requests.get(f"{server.base}/metrics", timeout=30)
        assert response.status_code == 200, response.text
        total = value(response.text, "facerec_http_requests_total", **HEALTH)
        assert total == sum(counts.values()) < 1000  # every worker's, and nothing of the previous run
        assert value(response.text, "facerec_people") == 0  # the database's gauges come along

        # A worker dies: its live gauge leaves with it (child_exit), its requests stay counted.
        pid = next(iter(counts))
        assert (metrics_dir / f"gauge_livemax_{pid}.db").exists()
        os.kill(int(pid), signal.SIGKILL)
        wait_for(lambda: not (metrics_dir / f"gauge_livemax_{pid}.db").exists(), timeout=60,
                 what="the dead worker's live gauge removed", detail=server.log_tail)
        after = requests.get(f"{server.base}/metrics", timeout=30).text
        assert value(after, "facerec_http_requests_total", **HEALTH) == total  # the dead one's too
    finally:
        started.stop_all()


def test_a_camera_worker_counts_its_frames_as_it_writes_its_status_and_serves_them(settings, tmp_path):
    from face_engine.bench.scene import OBAMA_1, Entry, build_scene
    from streams.models import Camera

    video = tmp_path / "videos" / "door.mp4"
    video.parent.mkdir()
    build_scene(video, script=[Entry(OBAMA_1, -0.5, 60, "left", 120, slide=0.5)], width=640, height=360, duration=3)
    camera = Camera.objects.create(name="door", source_url="file://door.mp4?loop=1", analysis_fps=4)
    metrics_dir, port = tmp_path / "prometheus", free_port()
    metrics_dir.mkdir()
    env = service_env(settings, CAMERA_FILE_ROOT=str(video.parent), CAMERA_LEASE_SECONDS="3",
                      PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    worker = Process("cameras", [sys.executable, "manage.py", "run_cameras", "--metrics-port", str(port),
                                 "--metrics-address", "127.0.0.1"], env, tmp_path / "cameras.log")
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        def served() -> str | None:
            assert worker.alive(), worker.log_tail()
            try:
                response = requests.get(url, timeout=10)
            except requests.ConnectionError:
                return None
            text = response.text if response.status_code == 200 else ""
            return text if value(text, "facerec_camera_frames_total", camera="door", state="analysed") >= 3 else None

        text = wait_for(served, timeout=120, what="the camera's frames on the worker's port", detail=worker.log_tail)
        assert value(text, "facerec_camera_frames_total", camera="door", state="received") >= 3
        assert "facerec_people" not in text  # the database's gauges: the API server's /metrics only
        assert requests.get(f"http://127.0.0.1:{port}/other", timeout=10).status_code == 404
    finally:
        worker.stop()
    # Stopped: its last status written and its counters are the same numbers.
    row = Camera.objects.get(pk=camera.pk)
    counted = {s.labels["state"]: s.value for m in MultiProcessCollector.merge([str(p) for p in
               metrics_dir.glob("*.db")]) for s in m.samples if s.name == "facerec_camera_frames_total"}
    assert row.frames_in > 0 and counted == {"received": row.frames_in, "analysed": row.frames_analysed,
                                             "dropped": row.frames_dropped}


def test_the_camera_workers_port_refuses_other_addresses(settings):
    from core.exposition import serve_metrics

    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    settings.METRICS_TOKEN = "port-" + "k" * 32
    server = serve_metrics(port=0, address="127.0.0.1")
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    try:
        refused = requests.get(url, timeout=10)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "permission_denied"
        wrong = requests.get(url, headers={"Authorization": "Bearer port-nope"}, timeout=10)
        assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Bearer")
        right = requests.get(url, headers={"Authorization": f"Bearer {settings.METRICS_TOKEN}"}, timeout=10)
        assert right.status_code == 200 and "facerec_stage_seconds" in right.text
        settings.METRICS_ALLOWED_NETWORKS = ["127.0.0.0/8"]
        assert requests.get(url, headers={"Authorization": "Bearer port-nope"}, timeout=10).status_code == 200
    finally:
        server.shutdown()
        server.server_close()
