"""The hostile-upload corpus (tests/hostile/corpus.py) against a real server: `make test-hostile`.

    .venv/bin/python tests/hostile/run.py [--families truncated,bombs] [--skip-camera] [--keep]

It starts gunicorn (gunicorn.conf.py, the production settings, one worker) on a throw-away SQLite
database, enrols one person, then sends every case to POST /api/faces/recognize/, to
/api/faces/batch-recognize/ (eight cases a request), /api/faces/verify/ (against the person),
POST /api/people/{id}/faces/ and the live WebSocket /ws/live/ (one binary frame a case, each answer
awaited), and serves the corpus as an MJPEG camera to a camera worker (`manage.py run_cameras`).

Every answer is checked: the documented error shape, a code the case allows (docs/api.md "Errors"),
no 5xx; the server is checked alive (same worker pid, health answering) after each family. Memory:
before each request the worker's peak RSS is reset (`5 > /proc/<pid>/clear_refs` resets VmHWM to the
current RSS) and read after its answer: what the request added must stay within the bound (--bound-mb,
default: DECODE_BYTES × MAX_IMAGE_PIXELS + DETECT_BYTES × FACE_DETECTION_MAX_SIDE² + 64 MB), and the
worker's highest RSS over the run within its idle RSS plus RUN_BOUNDS bounds.

Exit status 0 only when every check holds: 1 on a failed check, 2 when the setup failed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.hostile.camera import camera_check  # noqa: E402
from tests.hostile.corpus import Case, build  # noqa: E402
from tests.hostile.endpoints import Run  # noqa: E402
from tests.hostile.report import report  # noqa: E402
from tests.hostile.server import BOUND_SLACK_MB, DECODE_BYTES, DETECT_BYTES, RUN_BOUNDS  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default="", help="only these families (comma-separated)")
    parser.add_argument("--bound-mb", type=float, default=0.0,
                        help="peak MB a request may add to the idle worker (default: from MAX_IMAGE_PIXELS)")
    parser.add_argument("--skip-camera", action="store_true", help="leave out the camera worker")
    parser.add_argument("--keep", action="store_true", help="keep the database and the logs")
    args = parser.parse_args()
    began = time.monotonic()
    run = Run(args)
    cases = build(max_upload_bytes=run.engine.max_upload_bytes, max_image_pixels=run.engine.max_image_pixels)
    families: dict[str, list[Case]] = defaultdict(list)
    for case in cases:
        families[case.family].append(case)
    chosen = [f for f in families if not args.families or f in args.families.split(",")]
    print(f"hostile corpus: {len(cases)} cases in {len(families)} families "
          f"(built in {time.monotonic() - began:.0f} s); "
          f"MAX_UPLOAD_BYTES={run.engine.max_upload_bytes}, MAX_IMAGE_PIXELS={run.engine.max_image_pixels}")
    try:
        try:
            run.start()
        except Exception as exc:  # noqa: BLE001 - reported, exit 2
            tail = run.server.log_tail() if run.server else ""
            print(f"setup failed: {exc!r}\n{tail}", file=sys.stderr)
            return 2
        print(f"server: gunicorn worker pid {run.worker_pid}, idle RSS {run.baseline_mb:.0f} MB; bound per request: "
              f"+{run.bound_mb:.0f} MB ({DECODE_BYTES} B × MAX_IMAGE_PIXELS {run.engine.max_image_pixels} + "
              f"{DETECT_BYTES} B × FACE_DETECTION_MAX_SIDE² {run.engine.detection_max_side}² + {BOUND_SLACK_MB} MB); "
              f"over the run: idle + {RUN_BOUNDS} bounds")
        for name in chosen:
            run.family(name, families[name])
            if run.failures:
                break
        camera = {} if args.skip_camera or run.failures else camera_check(
            run, [c for name in chosen for c in families[name]])
    finally:
        if run.server:
            run.server.stop()
        if not args.keep:
            shutil.rmtree(run.dir, ignore_errors=True)
    return 1 if report(run, chosen, camera, began) else 0


if __name__ == "__main__":
    sys.exit(main())
