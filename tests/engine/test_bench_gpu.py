"""The GPU benchmark script runs here too (``--cpu``, a check of the script itself): its figures
come from a GPU machine (docs/performance.md), but a broken script must fail here, in CI."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

from PIL import Image

from face_engine.bench.gpu import frame_720p, main

DATA = Path(__file__).resolve().parents[1] / "data"


def test_frames_are_720p_jpegs() -> None:
    frame = Image.open(io.BytesIO(frame_720p(DATA / "misc" / "obama_small.jpg")))
    assert frame.format == "JPEG" and frame.size == (1280, 720)


def test_the_script_runs_on_the_cpu(tmp_path: Path, capsys) -> None:
    shutil.copy(DATA / "misc" / "obama-480p.jpg", tmp_path)
    main([str(tmp_path), "--cpu", "--embed-batch", "4", "--skip", "detect", "e2e", "--search-size", "5000"])
    out = capsys.readouterr().out
    assert "== 1. embeddings: 1 real chips, batch 4 ==" in out
    fp32 = next(line for line in out.splitlines() if line.startswith("fp32"))
    assert float(fp32.split()[3]) <= 1e-5  # max |Δ| to dlib of the torch CPU session
    assert "top-1 equal to numpy on 200/200" in out
