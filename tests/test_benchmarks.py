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
