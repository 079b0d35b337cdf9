"""The engine as its own distribution (packaging/face-engine): a wheel of face_engine/ without
Django, whose import and command lines work where Django cannot be imported; and importing the
compat package is light (no model, no network runtime loaded until a function needs one)."""

from __future__ import annotations

import configparser
import email.parser
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging" / "face-engine"


def python(code: str, *, cwd: Path, pythonpath: list[Path]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH")}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built offline from a copy of packaging/face-engine beside a link to face_engine/
    (so the build leaves nothing in the checkout)."""
    source = tmp_path_factory.mktemp("face-engine-source")
    shutil.copytree(PACKAGING, source / "packaging" / "face-engine",
                    ignore=shutil.ignore_patterns("build", "*.egg-info"))
    (source / "face_engine").symlink_to(ROOT / "face_engine", target_is_directory=True)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                    "--no-cache-dir", "-w", str(out), str(source / "packaging" / "face-engine")],
                   check=True, timeout=300, capture_output=True)
    (built,) = out.glob("face_engine-*.whl")
    return built


@pytest.fixture
def blocked_django(tmp_path) -> tuple[Path, Path]:
    """A folder that, first on the path, makes `import django` fail and leaves a mark if tried."""
    mark = tmp_path / "django-was-imported"
    package = tmp_path / "blocker" / "django"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(f"open({str(mark)!r}, 'w').close()\nraise ImportError('no Django here')\n")
    return tmp_path / "blocker", mark


def test_wheel_metadata(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = email.parser.Parser().parsestr(archive.read(f"{info}/METADATA").decode())
        scripts = configparser.ConfigParser()
        scripts.read_string(archive.read(f"{info}/entry_points.txt").decode())
    assert metadata["Name"] == "face-engine"
    requires = [r.split(";")[0].strip().lower() for r in metadata.get_all("Requires-Dist")]
    assert not any(r.startswith(("django", "djangorestframework", "channels", "celery")) for r in requires)
    assert {"click>=8.1", "dlib-bin>=20.0", "onnxruntime>=1.18"} <= set(requires)
    assert dict(scripts["console_scripts"]) == {
        "face_recognition": "face_engine.compat.face_recognition_cli:main",
        "face_detection": "face_engine.compat.face_detection_cli:main",
    }
    assert {"face_engine/compat/api.py", "face_engine/compat/batch.py", "face_engine/port/chip.py"} <= set(names)
    assert not [n for n in names if n.startswith(("face_engine/bench/", "tests/", "core/", "config/"))]


@pytest.mark.slow
def test_installed_wheel_runs_without_django(wheel, tmp_path, blocked_django, misc):
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    blocker, mark = blocked_django
    known = tmp_path / "known"
    known.mkdir()
    shutil.copy(misc / "obama.jpg", known / "obama.jpg")
    result = python(f"""
        import sys
        from importlib.metadata import distribution

        import face_engine.compat
        from face_engine.compat import api

        assert face_engine.compat.__file__.startswith({str(site)!r}), face_engine.compat.__file__
        scripts = {{e.name: e for e in distribution("face-engine").entry_points}}
        sys.argv = ["face_detection", {str(misc / "obama_small.jpg")!r}, "--upsample", "1"]
        try:
            scripts["face_detection"].load()()
        except SystemExit as exit:
            assert not exit.code, exit.code
        sys.argv = ["face_recognition", {str(known)!r}, {str(misc / "obama2.jpg")!r}]
        scripts["face_recognition"].load()()
        """, cwd=tmp_path, pythonpath=[blocker, site])
    assert result.returncode == 0, result.stderr[-3000:]
    assert not mark.exists(), "something tried to import Django"
    first, second = result.stdout.splitlines()
    assert first.startswith(f"{misc / 'obama_small.jpg'},") and len(first.split(",")) == 5
    assert second == f"{misc / 'obama2.jpg'},obama"


def test_importing_loads_no_model_and_no_network_runtime(tmp_path, blocked_django):
    blocker, mark = blocked_django
    result = python("""
        import sys
        import face_engine.compat
        from face_engine.compat import api, batch, face_detection_cli, face_recognition_cli
        from face_engine.compat._models import MODELS

        assert not MODELS._sessions
        print(sorted(m for m in ("torch", "onnxruntime", "django", "faiss") if m in sys.modules))
        """, cwd=tmp_path, pythonpath=[blocker, ROOT])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]" and not mark.exists()
