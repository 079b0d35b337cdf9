"""The benchmark commands run end to end on real photos and print their figures."""

import re
import shutil
from io import StringIO

import pytest
from django.core.management import call_command

from conftest import MISC


def test_engine_benchmark_prints_stages_ratios_and_identities(tmp_path, capsys, engine):
    for name in ("obama_small.jpg", "two_people.jpg"):
        shutil.copy(MISC / name, tmp_path / name)
    call_command("benchmark", str(tmp_path), "--no-lfw", "--embed-batch", "4")
    out = capsys.readouterr().out
    for stage in ("decode", "detect", "landmarks", "embed", "total"):
        assert re.search(rf"^{stage}\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+×$", out, re.M), stage
    assert re.search(r"images/s .* faces/s \(2 images, 3 faces", out)
    assert "identities: 2/2 photos name the same faces" in out
    assert re.search(r"embedding alone, batch 4: fast [\d.]+ ms/face", out)
    # One 720p image per call (each photo fitted into 1280×720), against the reference.
    single = out[out.index("single 720p images (2 photos"):]
    for who in ("fast", "reference"):
        assert re.search(rf"^  {who}\s+p50\s+[\d.]+ ms\s+p95\s+[\d.]+ ms\s+max\s+[\d.]+ ms$", single, re.M), who
    assert re.search(r"speed-up at p50: [\d.]+×", single)
    assert "  identities: 2/2 photos name the same faces" in single


def test_search_benchmark_prints_recall_and_latency(capsys):
    from face_engine.bench.search import main

    main(["--sizes", "3000", "--queries", "50"])
    row = capsys.readouterr().out.strip().splitlines()[-1].split()
    assert row[0] == "3,000"
    assert 0.9 <= float(row[6]) <= 1.0  # recall@1 of the approximate index


@pytest.mark.django_db(transaction=True)
def test_index_load_benchmark_rolls_back(engine):
    from people.models import Face, Person

    out = StringIO()
    call_command("benchmark_index", "--faces", "2000", "--chunk", "500", stdout=out)
    text = out.getvalue()
    assert "loaded 2,000 embeddings from the database into the index (exact)" in text
    assert "rolled back" in text
    assert not Face.objects.exists() and not Person.objects.exists()


def test_live_benchmark_scores_a_short_scene_and_prints_camera_capacity(tmp_path, capsys, engine):
    """A 9 s scene (Obama, then a stranger) played as a live camera, then one camera's capacity."""
    from face_engine.bench.live import main
    from face_engine.bench.scene import LIN, OBAMA_1, Entry, build_scene

    video = tmp_path / "short.mp4"
    build_scene(video, script=[Entry(OBAMA_1, 0.5, 2.5, "left", 150), Entry(LIN, 4.5, 2.5, "right", 150)],
                width=960, height=540, duration=8.5)
    main(["--video", str(video), "--cameras", "1", "--capacity-seconds", "3"])
    out = capsys.readouterr().out
    assert re.search(r"^obama\s+[\d.]+s\s+obama\s+\d+ ms\s+1 event\(s\)$", out, re.M), out
    assert re.search(r"^stranger:lin-manuel-miranda\s+[\d.]+s\s+unknown\s+\d+ ms\s+1 event\(s\)$", out, re.M), out
    assert "events: 2 for 2 appearances; duplicates 0, missed 0, known people named as someone else 0, " \
           "strangers named 0, known people called unknown 0, events with nobody in view 0" in out
    assert re.search(r"time to name \(known people\): n=1 min \d+", out)
    assert re.search(r"^\s+1\s+[\d.]+ / [\d.]+\s+\d+ms\s+\d+ms\s+[\d.]+%\s+\d+%\s+\d+%$", out, re.M), out
