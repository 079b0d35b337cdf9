"""The engine stands alone: no Django on import, no model loaded on import. Checked in fresh
interpreters, since this test process has Django (and maybe the models) loaded already."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Walks face_engine, importing each module; face_engine.port (a separate effort) is never
# entered, and a module that needs an optional runtime which is not installed is skipped.
IMPORT_ALL = """
import importlib, json, pkgutil, sys
import face_engine

OPTIONAL = {"torch", "onnxruntime"}
imported, skipped = [], []

def walk(package):
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        if info.name == "face_engine.port" or info.name.startswith("face_engine.port."):
            continue
        try:
            module = importlib.import_module(info.name)
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] not in OPTIONAL:
                raise
            skipped.append(info.name)
            continue
        imported.append(info.name)
        if info.ispkg:
            walk(module)

walk(face_engine)
print(json.dumps({
    "imported": imported,
    "skipped": skipped,
    "django": sorted(m for m in sys.modules if m == "django" or m.startswith("django.")),
}))
"""

IMPORT_REGISTRY = """
import json, sys
import face_engine.registry as registry
print(json.dumps({
    "pipelines": len(registry._pipelines),
    "loaded": len(registry.loaded_pipelines()),
    "django": "django" in sys.modules,
}))
"""


def run_fresh(code: str) -> dict:
    """Run ``code`` in a new interpreter at the repository root; return the JSON it prints."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_every_engine_module_does_not_import_django():
    report = run_fresh(IMPORT_ALL)
    assert report["django"] == []
    # The walk really went through the engine, runtime wrappers included.
    for name in (
        "face_engine.decode",
        "face_engine.index",
        "face_engine.pipeline",
        "face_engine.registry",
        "face_engine.models.detector",
        "face_engine.sessions.dlib_session",
    ):
        assert name in report["imported"], report


def test_importing_the_registry_loads_no_model():
    assert run_fresh(IMPORT_REGISTRY) == {"pipelines": 0, "loaded": 0, "django": False}


def test_a_pipeline_loads_its_models_only_when_asked():
    report = run_fresh(
        """
        import json
        from face_engine.registry import get_pipeline, loaded_pipelines
        from face_engine.settings import EngineSettings

        pipeline = get_pipeline(EngineSettings(detection_max_side=777))
        before = pipeline.loaded
        pipeline.load()
        print(json.dumps({
            "same": get_pipeline(EngineSettings(detection_max_side=777)) is pipeline,
            "before": before,
            "after": pipeline.loaded,
            "listed": loaded_pipelines() == [pipeline],
        }))
        """
    )
    assert report == {"same": True, "before": False, "after": True, "listed": True}
