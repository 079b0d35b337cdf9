"""Run a camera worker until SIGINT or SIGTERM: `manage.py run_cameras` (`make cameras`)."""

from __future__ import annotations

import signal
import threading

from django.core.management.base import BaseCommand

from streams.worker import CameraWorker


class Command(BaseCommand):
    help = "Claim cameras through database leases, read and analyse them, and record their events."

    def add_arguments(self, parser):
        parser.add_argument("--capacity", type=int, default=None,
                            help="Most cameras this worker runs (default CAMERA_WORKER_CAPACITY).")
        parser.add_argument("--worker-id", default=None, help="This worker's name in the leases (default host:pid).")

    def handle(self, *args, capacity=None, worker_id=None, **options):
        if capacity is not None and capacity < 0:
            self.stderr.write("--capacity must be 0 or more")
            raise SystemExit(2)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        worker = CameraWorker(worker_id=worker_id, capacity=capacity)
        self.stdout.write(f"camera worker {worker.worker_id} starting")
        worker.run(stop)
        self.stdout.write(f"camera worker {worker.worker_id} stopped")
