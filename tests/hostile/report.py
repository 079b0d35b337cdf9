"""The hostile runner's report: a table of answers by family and by channel, and the failures that
set its exit status.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tests.hostile.server import RUN_BOUNDS

if TYPE_CHECKING:
    from tests.hostile.endpoints import Run


@dataclass
class Family:
    name: str
    cases: int = 0
    answers: Counter = field(default_factory=Counter)
    server_errors: int = 0
    wrong: list[str] = field(default_factory=list)
    peak_mb: float = 0.0
    peak_case: str = ""
    slowest: float = 0.0
    slowest_case: str = ""


def answers_text(answers: Counter) -> str:
    return ", ".join(f"{key}: {n}" for key, n in sorted(answers.items()))


def table(title: str, rows: list[Family]) -> None:
    print(f"\n{title:<12} {'cases':>5} {'5xx':>4} {'wrong':>5} {'peak MB':>8} {'slowest':>8}  "
          "answers (HTTP status, batch item or ws message; outcome: n)")
    for row in rows:
        print(f"{row.name:<12} {row.cases or '':>5} {row.server_errors:>4} {len(row.wrong):>5} {row.peak_mb:>8.0f} "
              f"{row.slowest:>7.2f}s  {answers_text(row.answers)}")
        print(f"{'':<12} peak: {row.peak_case}; slowest: {row.slowest_case}")


def report(run: Run, chosen: list[str], camera: dict, began: float) -> list[str]:
    """Print the tables and every failure; the failures decide the exit status."""
    table("family", [run.families[name] for name in chosen if name in run.families])
    table("channel", list(run.channels.values()))
    if camera:
        print(f"\ncamera: {camera}")
    failures = list(run.failures)
    for row in run.families.values():
        failures += row.wrong[:20]
        if row.server_errors:
            failures.append(f"{row.name}: {row.server_errors} server errors")
        if row.peak_mb > run.bound_mb:
            failures.append(f"{row.name}: peak +{row.peak_mb:.0f} MB ({row.peak_case}) over the bound "
                            f"+{run.bound_mb:.0f} MB")
    print(f"worker's highest RSS: {run.highest_mb:.0f} MB (idle {run.baseline_mb:.0f} MB)")
    if run.highest_mb > run.baseline_mb + RUN_BOUNDS * run.bound_mb:
        failures.append(f"the worker's RSS reached {run.highest_mb:.0f} MB, over idle + {RUN_BOUNDS} bounds")
    if camera and not (camera.get("alive") and camera.get("frames_after", 0) >= 10 and "error" not in camera):
        failures.append(f"the camera worker did not survive the corpus or stopped reading: {camera}")
    if camera and camera.get("peak_mb", 0) > run.bound_mb:
        failures.append(f"the camera worker's peak +{camera['peak_mb']:.0f} MB is over the bound")
    print(f"\n{sum(sum(r.answers.values()) for r in run.families.values())} answers in "
          f"{time.monotonic() - began:.0f} s; {len(failures)} failures")
    for failure in failures:
        print(f"FAIL {failure}")
    return failures
