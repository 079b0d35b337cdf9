"""What the benchmarks measure of the machine itself: how busy it is, how much CPU a server's
processes used (by thread priority), and latency percentiles. On a shared 2-core machine another
job running at the same time would be measured as the server's slowness: wait for quiet first, and
report what else ran."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import numpy as np


def percentiles(values: list[float]) -> dict[str, float | None]:
    array = np.asarray(values) * 1000.0
    return {f"p{q}" if q < 100 else "max": float(np.percentile(array, q)) if values else None
            for q in (50, 95, 99, 100)}


def cpu_by_nice(master: int) -> dict[int, float]:
    """CPU seconds the server's processes (the master's children) have used, by thread nice value."""
    found: dict[int, float] = {}
    children = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()
    tick = os.sysconf("SC_CLK_TCK")
    for pid in children:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            nice = int(fields[16])
            found[nice] = found.get(nice, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return found


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def wait_quiet(limit: float = 0.25, longest: float = 600) -> float:
    """Wait (up to ``longest`` s) until the machine's busy cores over 5 s are under ``limit``: other
    work on a 2-core machine (a test run, a build) would be measured as the server's slowness."""
    deadline = time.monotonic() + longest
    while True:
        before = machine_busy()
        time.sleep(5)
        after = machine_busy()
        busy = (after[0] - before[0]) / (after[1] - before[1]) * (os.cpu_count() or 1)
        if busy < limit or time.monotonic() > deadline:
            return busy
