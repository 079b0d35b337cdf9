"""Each atheris harness of this folder, for a fixed time budget (FUZZ_SECONDS, 20 s by default),
in a subprocess of its own: it must end without a finding (exit status 0, libFuzzer's "Done").

A finding leaves the input in the test's tmp_path (``crash-<sha1>``); replay it with
``python tests/fuzz/<harness>.py <that file>``. Longer runs: ``make fuzz`` (docs: the
conformance notes)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SECONDS = int(os.environ.get("FUZZ_SECONDS", "20"))
HARNESSES = ["fuzz_dat", "fuzz_decode", "fuzz_multipart", "fuzz_websocket"]


@pytest.mark.slow
@pytest.mark.parametrize("harness", HARNESSES)
def test_harness_finds_nothing(harness, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    env["FUZZ_TMP"] = str(tmp_path)  # the harness's throw-away database and media
    command = [sys.executable, str(HERE / f"{harness}.py"), f"-max_total_time={SECONDS}", "-seed=1", "-timeout=60",
               "-rss_limit_mb=3072", "-print_final_stats=1", f"-artifact_prefix={tmp_path}/", str(corpus)]
    # Through a shell that forks it (not execs it): libFuzzer's RSS is getrusage's peak, which Linux
    # carries across fork + exec, so a harness started straight from this test process would begin
    # at the whole test session's peak (3.7 GB measured) and trip the limit before its first input.
    result = subprocess.run(
        ["/bin/sh", "-c", '"$@"; exit $?', "sh", *command],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=SECONDS + 240,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{harness} found a crash (input kept in {tmp_path}):\n{output[-6000:]}"
    runs = re.search(r"Done (\d+) runs", output)
    assert runs and int(runs.group(1)) > 10, output[-3000:]  # it ran inputs, not just started
    assert list(corpus.iterdir()), "the seeds were not written"
