"""Run a camera worker until SIGINT or SIGTERM: `manage.py run_cameras` (`make cameras`)."""

from __future__ import annotations

import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand

from streams.worker import CameraWorker


class Command(BaseCommand):
    help = "Claim cameras through database leases, read and analyse them, and record their events."

    def add_arguments(self, parser):
        parser.add_argument("--capacity", type=int, default=None,
                            help="Most cameras this worker runs (default CAMERA_WORKER_CAPACITY).")
        parser.add_argument("--worker-id", default=None, help="This worker's name in the leases (default host:pid).")
        # getattr: the settings are read once in config/settings; absent there, the port is off.
        parser.add_argument("--metrics-port", type=int, default=settings.CAMERA_METRICS_PORT,
                            help="Serve this worker's Prometheus metrics on this port, at /metrics (default "
                                 "CAMERA_METRICS_PORT; 0: off). Same access rules as the server's /metrics.")
        parser.add_argument("--metrics-address", default=settings.CAMERA_METRICS_ADDRESS,
                            help="The IPv4 address the metrics port listens on (default CAMERA_METRICS_ADDRESS, "
                                 "0.0.0.0).")

    def handle(self, *args, capacity=None, worker_id=None, metrics_port=0, metrics_address="0.0.0.0", **options):
        if capacity is not None and capacity < 0:
            self.stderr.write("--capacity must be 0 or more")
            raise SystemExit(2)
        if not 0 <= metrics_port <= 65535:
            self.stderr.write("--metrics-port must be between 1 and 65535 (0: off)")
            raise SystemExit(2)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        metrics = None
        if metrics_port:
            from core.exposition import serve_metrics

            try:
                metrics = serve_metrics(port=metrics_port, address=metrics_address)
            except OSError as exc:  # taken, or not an address of this host
                self.stderr.write(f"--metrics-port: cannot listen on {metrics_address}:{metrics_port}: {exc}")
                raise SystemExit(2) from None
            self.stdout.write(f"metrics on http://{metrics_address}:{metrics_port}/metrics")
        worker = CameraWorker(worker_id=worker_id, capacity=capacity)
        self.stdout.write(f"camera worker {worker.worker_id} starting")
        try:
            worker.run(stop)
        finally:
            if metrics is not None:
                metrics.shutdown()
        self.stdout.write(f"camera worker {worker.worker_id} stopped")
