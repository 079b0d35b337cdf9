"""Live recognition benchmark: ``python -m face_engine.bench.live``.

Builds the test video from the project's photos (``scene.py``: people enter, stay, leave, come
back, two at once, strangers; 1280×720 at 25 fps), enrols the four known people from their
training photos, then plays the video as a live camera (a file source at its own frame rate) into
the same reader, analysis loop and appearance vote the camera workers run, at 5 analysed frames a
second. It prints:

- time to name, from the first frame in which a face is wholly visible to its event, per
  appearance and as a distribution, beside the same frames decided by a vote that waits for two
  agreeing views (what the single confident view buys);
- the events against the script: duplicates, missed, known people named as someone else,
  strangers named, events matching no appearance;
- how many cameras the machine holds at once at 5 fps: analysed fps, lag, dropped frames and CPU
  per camera, for 1…N cameras playing the video together.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from face_engine.bench.scene import PHOTOS_ROOT, SceneTruth, build_scene
from face_engine.index import GalleryIndex
from face_engine.live.appearances import (
    AppearanceEvent,
    AppearanceTracker,
    Candidate,
    MatchFn,
    TrackedFace,
    VotePolicy,
)
from face_engine.live.frames import Frame, LatestFrame
from face_engine.live.loop import LiveLoop, Stream
from face_engine.live.source_url import parse_source
from face_engine.live.sources import VideoSource
from face_engine.pipeline import FacePipeline
from face_engine.registry import get_pipeline
from face_engine.settings import EngineSettings
from face_engine.types import Face, ImageFaces, RGBImage

KNOWN = ("obama", "biden", "kit_harington", "rose_leslie")  # alex_lacamoire stays a stranger here


def enrol(pipeline: FacePipeline, root: Path) -> tuple[GalleryIndex, dict[int, str]]:
    """The known people's training photos, enrolled as the service enrols them (jittered)."""
    face_ids: list[int] = []
    person_ids: list[int] = []
    vectors: list[np.ndarray] = []
    names: dict[int, str] = {}
    for person_id, name in enumerate(KNOWN, start=1):
        names[person_id] = name
        for path in sorted((root / "people" / "train" / name).iterdir()):
            result = pipeline.analyze_bytes([path.read_bytes()])[0]
            assert isinstance(result, ImageFaces) and result.largest is not None, path
            face = result.largest
            face_ids.append(len(face_ids) + 1)
            person_ids.append(person_id)
            vectors.append(pipeline.enrol_embedding(face))
    index = GalleryIndex(np.asarray(face_ids), np.asarray(person_ids), np.stack(vectors).astype(np.float32))
    return index, names


def matcher(index: GalleryIndex) -> MatchFn:
    def match(embeddings: np.ndarray) -> list[list[Candidate]]:
        return [[Candidate(m.person_id, m.distance) for m in found] for found in index.search(embeddings, 3)]
    return match


class Tee:
    """Feeds one analysed stream to two appearance trackers (two vote policies, same frames)."""

    def __init__(self, *trackers: AppearanceTracker) -> None:
        self.trackers = trackers

    def observe(self, faces: Sequence[Face], image: RGBImage, *, at: float) -> list[TrackedFace]:
        return [t.observe(faces, image, at=at) for t in self.trackers][0]

    def tick(self, now: float) -> None:
        for t in self.trackers:
            t.tick(now)

    def close_all(self) -> None:
        for t in self.trackers:
            t.close_all()


@dataclass
class CameraRun:
    slot: LatestFrame
    source: VideoSource
    stream: Stream
    events: dict[str, list[AppearanceEvent]] = field(default_factory=dict)
    clock_offsets: list[float] = field(default_factory=list)  # frame received_at − pts: the video's time zero


def start_camera(loop: LiveLoop, video: Path, index: GalleryIndex, policies: dict[str, VotePolicy], key: int,
                 fps: float, min_face_size: int) -> CameraRun:
    slot = LatestFrame()
    spec = parse_source(f"file://{video}", file_root=str(video.parent))
    source = VideoSource(spec, slot, name=f"bench-{key}")
    run = CameraRun(slot=slot, source=source, stream=None)  # type: ignore[arg-type]
    trackers = []
    for name, policy in policies.items():
        run.events[name] = []
        trackers.append(AppearanceTracker(match=matcher(index), policy=policy, emit=run.events[name].append))

    def offset(frame: Frame, tracked: list[TrackedFace], timings: dict[str, float]) -> None:
        run.clock_offsets.append(frame.received_at - frame.pts)

    run.stream = Stream(key=key, slot=slot, appearances=Tee(*trackers), fps=fps,  # type: ignore[arg-type]
                        min_face_size=min_face_size, on_result=offset)
    loop.add(run.stream)
    source.start()
    return run


def play(pipeline: FacePipeline, video: Path, index: GalleryIndex, policies: dict[str, VotePolicy], *, cameras: int,
         seconds: float, fps: float, min_face_size: int) -> tuple[list[CameraRun], float, float]:
    """Play the video on ``cameras`` cameras at once for ``seconds``; (runs, wall s, CPU s)."""
    loop = LiveLoop(pipeline)
    thread = threading.Thread(target=loop.run, daemon=True)
    cpu0, wall0 = time.process_time(), time.monotonic()
    thread.start()
    runs = [start_camera(loop, video, index, policies, key, fps, min_face_size) for key in range(cameras)]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not all(r.source.status().ended for r in runs):
        time.sleep(0.2)
    for run in runs:
        run.source.stop()
        loop.remove(run.stream.key)
    loop.stop()
    thread.join(10)
    return runs, time.monotonic() - wall0, time.process_time() - cpu0


@dataclass
class Score:
    latencies: list[float] = field(default_factory=list)  # ms, known people named correctly
    rows: list[str] = field(default_factory=list)
    duplicates: int = 0
    missed: int = 0
    wrong: int = 0  # a known person named as someone else
    strangers_named: int = 0
    unknown_for_known: int = 0  # an "unknown" event while only known people were in view
    spurious: int = 0  # events while nobody was in view


def score(truth: SceneTruth, events: list[AppearanceEvent], zero: float, names: dict[int, str]) -> Score:
    """Give each opened event to the appearance it belongs to: one in view at the same time with
    the same identity (the person's name, or a stranger for "unknown"), then count per appearance."""
    result = Score()
    mine: dict[int, list[AppearanceEvent]] = {i: [] for i in range(len(truth.appearances))}
    for event in (e for e in events if e.phase == "opened"):
        during = [i for i, a in enumerate(truth.appearances)
                  if event.first_seen <= zero + a.exit_end + 0.5 and event.last_seen >= zero + a.enter_start]
        name = names.get(event.person_id) if event.person_id is not None else None
        same = [i for i in during if (truth.appearances[i].label == name if name is not None
                                      else not truth.appearances[i].known)]
        if same:
            mine[min(same, key=lambda i: len(mine[i]))].append(event)
        elif not during:
            result.spurious += 1
        elif name is None:
            result.unknown_for_known += 1
        elif all(not truth.appearances[i].known for i in during):
            result.strangers_named += 1
        else:
            result.wrong += 1
    for i, appearance in enumerate(truth.appearances):
        if not mine[i]:
            result.missed += 1
            result.rows.append(f"{appearance.label:<30} {appearance.visible_from:7.2f}s  MISSED")
            continue
        result.duplicates += len(mine[i]) - 1
        first = min(mine[i], key=lambda e: e.named_at)
        latency = (first.named_at - (zero + appearance.visible_from)) * 1000.0
        if appearance.known:
            result.latencies.append(latency)
        who = names.get(first.person_id, "?") if first.person_id is not None else "unknown"
        result.rows.append(f"{appearance.label:<30} {appearance.visible_from:7.2f}s  {who:<14} "
                           f"{latency:8.0f} ms  {len(mine[i])} event(s)")
    return result


def distribution(values: list[float]) -> str:
    if not values:
        return "no values"
    q = np.percentile(values, [0, 50, 95, 100])
    return (f"n={len(values)} min {q[0]:.0f}  p50 {q[1]:.0f}  p95 {q[2]:.0f}  max {q[3]:.0f} ms; "
            f"sorted: {', '.join(f'{v:.0f}' for v in sorted(values))}")


def accuracy(truth: SceneTruth, runs: list[CameraRun], names: dict[int, str], policies: list[str]) -> None:
    run = runs[0]
    zero = statistics.median(run.clock_offsets)
    for name in policies:
        result = score(truth, run.events[name], zero, names)
        print(f"\n-- vote: {name} --")
        if name == policies[0]:
            print(f"{'appearance':<30} {'visible':>8}  {'named':<14} {'time to name':>11}")
            print("\n".join(result.rows))
        print(f"time to name (known people): {distribution(result.latencies)}")
        print(f"events: {sum(1 for e in run.events[name] if e.phase == 'opened')} for {len(truth.appearances)} "
              f"appearances; duplicates {result.duplicates}, missed {result.missed}, known people named as "
              f"someone else {result.wrong}, strangers named {result.strangers_named}, known people called "
              f"unknown {result.unknown_for_known}, events with nobody in view {result.spurious}")


def capacity(pipeline: FacePipeline, video: Path, index: GalleryIndex, counts: list[int], seconds: float,
             fps: float, min_face_size: int) -> None:
    print(f"\n-- cameras at once ({fps:g} fps analysed each, {seconds:.0f} s, {os.cpu_count()} cores) --")
    print(f"{'cameras':>7} {'fps analysed (min/mean)':>24} {'lag p50':>8} {'lag p95':>8} {'dropped %':>9} "
          f"{'CPU/camera':>10} {'CPU total':>9}")
    for count in counts:
        runs, wall, cpu = play(pipeline, video, index, {"default": VotePolicy()}, cameras=count, seconds=seconds,
                               fps=fps, min_face_size=min_face_size)
        rates = [r.stream.analysed / wall for r in runs]
        lags = [lag for r in runs for lag in list(r.stream.lag_ms)[5:]]
        received = sum(r.slot.received for r in runs)
        dropped = sum(r.slot.dropped for r in runs)
        print(f"{count:>7} {min(rates):>11.2f} / {statistics.mean(rates):<10.2f} "
              f"{np.percentile(lags, 50):>6.0f}ms {np.percentile(lags, 95):>6.0f}ms "
              f"{100.0 * dropped / max(received, 1):>8.1f}% {100.0 * cpu / wall / count:>8.0f}% "
              f"{100.0 * cpu / wall:>8.0f}%")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, help="a scene video already built (its .json beside it)")
    parser.add_argument("--fps", type=float, default=5.0)
    parser.add_argument("--min-face-size", type=int, default=80)
    parser.add_argument("--cameras", type=int, nargs="*", default=[1, 2, 3, 4])
    parser.add_argument("--capacity-seconds", type=float, default=30.0)
    parser.add_argument("--no-accuracy", action="store_true")
    args = parser.parse_args(argv)
    pipeline = get_pipeline(EngineSettings.from_env())
    pipeline.load()
    video = args.video
    if video is None:
        video = Path(tempfile.mkdtemp(prefix="facerec-live-")) / "scene720.mp4"
        started = time.monotonic()
        build_scene(video)
        print(f"built {video} in {time.monotonic() - started:.1f} s")
    truth = SceneTruth.from_json(Path(f"{video}.json").read_text())
    index, names = enrol(pipeline, PHOTOS_ROOT)
    print(f"video {truth.width}x{truth.height} at {truth.fps} fps, {truth.duration:.1f} s, "
          f"{len(truth.appearances)} appearances; gallery {len(index)} faces of {len(names)} people; "
          f"analysed at {args.fps:g} fps, min face {args.min_face_size} px; {os.cpu_count()} cores")
    if not args.no_accuracy:
        policies = {"default (one confident view names)": VotePolicy(),
                    "two agreeing views required": replace(VotePolicy(), confident=0.0)}
        runs, wall, cpu = play(pipeline, video, index, policies, cameras=1, seconds=truth.duration + 5,
                               fps=args.fps, min_face_size=args.min_face_size)
        stream = runs[0].stream
        lags = list(stream.lag_ms)
        print(f"one camera: {stream.analysed} frames analysed in {wall:.1f} s ({stream.analysed / wall:.2f} fps), "
              f"{runs[0].slot.dropped} of {runs[0].slot.received} frames dropped; lag (received → analysed) "
              f"p50 {np.percentile(lags, 50):.0f} ms, p95 {np.percentile(lags, 95):.0f} ms; "
              f"CPU {100 * cpu / wall:.0f}%")
        accuracy(truth, runs, names, list(policies))
    if args.cameras:
        capacity(pipeline, video, index, args.cameras, args.capacity_seconds, args.fps, args.min_face_size)
    print(f"\npeak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
