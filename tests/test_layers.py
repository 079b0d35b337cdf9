"""The import layers: config → apps → core → face_engine, never back. Every import is read from
the source (module level and inside functions alike), so a lazy import cannot hide a way back."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = {"attendance", "corrections", "events", "jobs", "people", "privacy", "recognition", "streams",
        "unknowns", "webhooks"}
PROJECT = APPS | {"config", "core", "face_engine", "loadtest"}
# What each package may import of the project besides itself. `people` is the base app every other
# app builds on: it imports no other app but `jobs`, which runs its encoding jobs.
ALLOWED = {
    "face_engine": set(),
    "core": {"face_engine"},
    "people": {"core", "face_engine", "jobs"},
    **{app: APPS | {"core", "face_engine"} for app in APPS - {"people"}},
}


def project_imports(package: str) -> list[tuple[str, str]]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        if "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level
                     else [])
            for name in names:
                top = name.split(".")[0]
                if top in PROJECT and top != package:
                    found.append((top, f"{path.relative_to(ROOT)}:{node.lineno}"))
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_only_go_down(package):
    wrong = [f"{where} imports {top}" for top, where in project_imports(package) if top not in ALLOWED[package]]
    assert not wrong, "\n".join(wrong)


def test_no_app_imports_the_wiring():
    wrong = [f"{where} imports config" for package in APPS | {"core", "face_engine"}
             for top, where in project_imports(package) if top == "config"]
    assert not wrong, "\n".join(wrong)
