"""face_recognition 1.3 (dlib) against ``face_engine.compat``, function by function, one process,
the same photos:

    python -m face_engine.bench.compat [--data tests/data] [--quick] [--json out.json]

For each function: the original's time, ours, the ratio, and whether the outputs are equal (boxes
equal, the largest encoding difference, the command lines' output line for line). Ours runs on
whatever the engine's environment selects (ONNX Runtime on the CPU, torch on a GPU); dlib-bin's
dlib is CPU-only. Needs the original installed: ``pip install --no-deps face_recognition==1.3.0``
(``make setup`` does it). The default run takes about two minutes on 2 cores, most of it dlib's
CNN; docs/compat.md holds the figures.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import types
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "tests" / "data"


def import_original() -> Any:
    """The original ``face_recognition.api``. Its ``face_recognition_models`` needs
    ``pkg_resources``, which current setuptools no longer ships: when it is missing, a stand-in
    with the one function used (``resource_filename``) is present during the import only."""
    shim = None
    if importlib.util.find_spec("pkg_resources") is None:
        shim = types.ModuleType("pkg_resources")

        def resource_filename(package: str, resource: str) -> str:
            spec = importlib.util.find_spec(package)
            if spec is None or not spec.submodule_search_locations:
                raise ImportError(package)
            return os.path.join(next(iter(spec.submodule_search_locations)), resource)

        shim.resource_filename = resource_filename  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim
    from PIL import ImageFile

    # Its import turns on Pillow's LOAD_TRUNCATED_IMAGES for the whole process: put it back, or
    # every later decode in this process (the service's own refusal of cut files) would change.
    truncated = ImageFile.LOAD_TRUNCATED_IMAGES
    try:
        from face_recognition import api
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = truncated
        if shim is not None and sys.modules.get("pkg_resources") is shim:
            del sys.modules["pkg_resources"]
    return api


@dataclass
class Row:
    function: str
    work: str
    original_s: float
    ours_s: float
    equal: str

    @property
    def ratio(self) -> float:
        return self.original_s / self.ours_s if self.ours_s else float("inf")


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _rects(raw: Any) -> list[tuple[int, int, int, int]]:
    return [(r.left(), r.top(), r.right(), r.bottom()) for r in raw]


def _boxes_equal(a: list[list[Any]], b: list[list[Any]]) -> str:
    same = sum(x == y for x, y in zip(a, b, strict=True))
    faces = sum(len(x) for x in a)
    return f"boxes equal ({faces} faces)" if same == len(a) else f"boxes differ in {len(a) - same}/{len(a)} images"


def _max_diff(a: list[list[np.ndarray]], b: list[list[np.ndarray]]) -> float:
    return max((float(np.max(np.abs(x - y))) for xs, ys in zip(a, b, strict=True)
                for x, y in zip(xs, ys, strict=True)), default=0.0)


def _cli(main: Any, args: list[str]) -> tuple[list[str], float]:
    from click.testing import CliRunner

    result, seconds = timed(lambda: CliRunner().invoke(main, args, catch_exceptions=False))
    if result.exit_code != 0:
        raise RuntimeError(f"{main.name} {args} exited with {result.exit_code}: {result.output}")
    return result.stdout.splitlines(), seconds


class Bench:
    def __init__(self, data: Path, quick: bool, original: Any, import_s: float) -> None:
        self.data, self.quick = data, quick
        self.rows: list[Row] = []
        self.original, self.import_s = original, import_s
        self.runtime = ""

    def load(self, *names: str) -> list[np.ndarray]:
        from face_engine.compat import api

        return [api.load_image_file(self._path(name)) for name in names]

    def _path(self, name: str) -> Path:
        for folder in ("misc", "people/test", "people/train"):
            for path in sorted((self.data / folder).rglob(name)):
                return path
        raise FileNotFoundError(name)

    def add(self, function: str, work: str, original_s: float, ours_s: float, equal: str) -> None:
        row = Row(function, work, original_s, ours_s, equal)
        self.rows.append(row)
        print(f"{function:<34} {work:<30} {original_s:8.2f} s {ours_s:8.2f} s {row.ratio:7.1f}×   {equal}",
              flush=True)

    def run(self) -> None:
        from face_engine.compat import api as ours
        from face_engine.compat._models import MODELS

        orig = self.original

        def warm() -> None:
            image = self.load("obama_small.jpg")[0]
            ours.face_encodings(image)
            ours.face_locations(image, 0, "cnn")

        _, load_s = timed(warm)
        self.add("load models", "import / first call", self.import_s, load_s, "-")

        hog_names = ["obama.jpg", "obama2.jpg", "biden.jpg", "two_people.jpg", "obama_partial_face.jpg", "32bit.png"]
        if self.quick:
            hog_names = hog_names[:3]
        images = self.load(*hog_names)
        a, t_a = timed(lambda: [orig.face_locations(im) for im in images])
        b, t_b = timed(lambda: [ours.face_locations(im) for im in images])
        self.add("face_locations hog", f"{len(images)} photos, upsample 1", t_a, t_b, _boxes_equal(a, b))
        locations = a

        def cnn_boxes(module: Any, images: list[np.ndarray], upsample: int) -> list[list[Any]]:
            return [_rects(r.rect for r in module._raw_face_locations(im, upsample, "cnn")) for im in images]

        for upsample, names in ((1, ["obama_small.jpg", "obama-240p.jpg"]), (0, ["obama-480p.jpg", "two_people.jpg"])):
            cnn_images = self.load(*(names[:1] if self.quick else names))
            a, t_a = timed(lambda: cnn_boxes(orig, cnn_images, upsample))  # noqa: B023 - called at once
            b, t_b = timed(lambda: cnn_boxes(ours, cnn_images, upsample))  # noqa: B023
            self.add("face_locations cnn", f"{len(cnn_images)} photos, upsample {upsample}", t_a, t_b,
                     _boxes_equal(a, b))

        copies = 2 if self.quick else 3
        batch = self.load(*["obama-480p.jpg"] * copies)
        a, t_a = timed(lambda: orig.batch_face_locations(batch, 0))
        b, t_b = timed(lambda: ours.batch_face_locations(batch, 0))
        self.add("batch_face_locations", f"{copies} × 480p, upsample 0", t_a, t_b, _boxes_equal(a, b))

        a, t_a = timed(lambda: [orig.face_encodings(im, loc) for im, loc in zip(images, locations, strict=True)])
        b, t_b = timed(lambda: [ours.face_encodings(im, loc) for im, loc in zip(images, locations, strict=True)])
        faces = sum(len(x) for x in a)
        self.add("face_encodings", f"{faces} faces, locations given", t_a, t_b, f"max |Δ| {_max_diff(a, b):.1e}")

        a, t_a = timed(lambda: [orig.face_encodings(im) for im in images])
        b, t_b = timed(lambda: [ours.face_encodings(im) for im in images])
        self.add("face_encodings", f"{len(images)} photos, HOG + encode", t_a, t_b, f"max |Δ| {_max_diff(a, b):.1e}")

        self._jitter(images[0], locations[0])
        self._clis()
        self.runtime = f"{MODELS.settings.runtime.value} → {type(MODELS.resnet()).__name__}"

    def _jitter(self, image: np.ndarray, location: list[Any]) -> None:
        from face_engine.compat import api as ours

        orig, jitters = self.original, 10
        plain = ours.face_encodings(image, location)[0]
        a, t_a = timed(lambda: orig.face_encodings(image, location, jitters)[0])
        b, t_b = timed(lambda: ours.face_encodings(image, location, jitters)[0])
        equal = (f"not equal (random jitters): L2 {np.linalg.norm(a - b):.3f}; to the plain encoding "
                 f"dlib {np.linalg.norm(a - plain):.3f}, ours {np.linalg.norm(b - plain):.3f}")
        self.add("face_encodings num_jitters=10", "1 face", t_a, t_b, equal)

    def _clis(self) -> None:
        from face_recognition import face_detection_cli as orig_fd
        from face_recognition import face_recognition_cli as orig_fr

        from face_engine.compat import face_detection_cli, face_recognition_cli

        known = Path(tempfile.mkdtemp(prefix="compat-bench-known-"))
        try:
            people = {"obama.jpg": "obama.jpg", "biden.jpg": "biden.jpg", "john1.jpeg": "kit_harington.jpeg",
                      "img1.jpg": "alex_lacamoire.jpg"}
            for source, name in people.items():
                shutil.copy(self._path(source), known / name)
            check = self.data / "people" / "test"
            a, t_a = _cli(orig_fr.main, [str(known), str(check)])
            b, t_b = _cli(face_recognition_cli.main, [str(known), str(check)])
            work = f"{len(os.listdir(known))} known, {len(os.listdir(check))} photos"
            self.add("face_recognition CLI", work, t_a, t_b, "output equal" if a == b else f"output differs: {a} {b}")
            c, t_c = _cli(face_recognition_cli.main, [str(known), str(check), "--cpus", "-1"])
            self.add("face_recognition CLI --cpus -1", work, t_a, t_c, "output equal" if a == c else "output differs")
        finally:
            shutil.rmtree(known, ignore_errors=True)
        folder = self.data / "misc"
        a, t_a = _cli(orig_fd.main, [str(folder)])
        b, t_b = _cli(face_detection_cli.main, [str(folder)])
        self.add("face_detection CLI (hog)", f"{len(os.listdir(folder))} photos", t_a, t_b,
                 "output equal" if a == b else f"output differs: {a} {b}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with misc/ and people/ photos")
    parser.add_argument("--quick", action="store_true", help="fewer photos (about a minute on 2 cores)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    try:
        original, import_s = timed(import_original)
    except ImportError as exc:
        sys.exit(f"the original face_recognition is not importable ({exc}): "
                 "pip install --no-deps face_recognition==1.3.0")
    print(f"face_recognition 1.3 (dlib, CPU) against face_engine.compat — {os.cpu_count()} cores, "
          f"{platform.processor() or platform.machine()}, {datetime.date.today()}")
    print(f"{'function':<34} {'work':<30} {'original':>10} {'ours':>10} {'ratio':>8}   equal")
    bench = Bench(args.data, args.quick, original, import_s)
    bench.run()
    print(f"ours ran on: {bench.runtime}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) | {"ratio": r.ratio} for r in bench.rows], indent=1))


if __name__ == "__main__":
    main()
