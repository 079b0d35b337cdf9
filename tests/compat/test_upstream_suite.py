"""face_recognition 1.3's own unit tests, run against face_engine.compat.

The test file is taken from the original's source distribution, which `make setup` downloads into
var/upstream/ (registries are not reached while testing). Only its three import lines change
(`from face_recognition import X` → `from face_engine.compat import X`); it runs with pytest in a
temporary folder outside this repository, beside a test_images folder of our copies of its photos.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SDIST = Path(os.environ.get("FACE_RECOGNITION_SDIST", ROOT / "var" / "upstream" / "face_recognition-1.3.0.tar.gz"))
MEMBER = "face_recognition-1.3.0/tests/test_face_recognition.py"
IMPORT = re.compile(r"^from face_recognition import (api|face_recognition_cli|face_detection_cli)$", re.MULTILINE)
PHOTOS = ("32bit.png", "biden.jpg", "obama.jpg", "obama2.jpg", "obama3.jpg", "obama_partial_face.jpg",
          "obama_partial_face2.jpg")


@pytest.mark.slow
def test_the_original_test_file_passes(tmp_path, misc):
    if not SDIST.is_file():
        pytest.skip(f"{SDIST} is missing: `make setup` downloads face_recognition 1.3.0's sdist there")
    with tarfile.open(SDIST) as archive:
        handle = archive.extractfile(MEMBER)
        assert handle is not None, f"{MEMBER} not in {SDIST}"
        source = handle.read().decode()
    rewritten, count = IMPORT.subn(r"from face_engine.compat import \1", source)
    assert count == 3
    assert not re.search(r"^\s*(from|import) face_recognition\b", rewritten, re.MULTILINE)

    suite = tmp_path / "upstream"
    (suite / "test_images").mkdir(parents=True)
    (suite / "test_face_recognition.py").write_text(rewritten)
    for name in PHOTOS:
        shutil.copy(misc / name, suite / "test_images" / name)
    report = tmp_path / "report.xml"
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:django", "-p", "no:cacheprovider", "-rfE",
         f"--junitxml={report}", "test_face_recognition.py"],
        cwd=suite, env=env, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    totals = ET.parse(report).getroot().find("testsuite")
    assert totals is not None
    counts = {key: int(totals.get(key, "0")) for key in ("tests", "failures", "errors", "skipped")}
    assert counts == {"tests": 30, "failures": 0, "errors": 0, "skipped": 0}
