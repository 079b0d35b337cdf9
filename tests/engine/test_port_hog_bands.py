"""dlib's scan on row bands of the large pyramid levels (face_engine/port/hog/dlib_levels.py): the
plan, the exactness against dlib's own ``run``, why the overlap is what it is, and failures."""

from __future__ import annotations

import dataclasses
import threading

import dlib
import numpy as np
import pytest

from face_engine.port.hog import dlib_levels
from face_engine.port.hog.dlib_levels import BAND_OVERLAP, CELL, DlibLevelsDetector
from face_engine.port.hog.model import load_frontal_face_model, serialize_hog_detector
from tests.engine.test_port_hog import as_tuples, dlib_run, load


@pytest.fixture(scope="module")
def model():
    return load_frontal_face_model()


@pytest.fixture(scope="module")
def dlib_hog():
    return dlib.get_frontal_face_detector()


@pytest.fixture(scope="module")
def banded(model) -> DlibLevelsDetector:
    """Six threads' plan (run on this machine's cores): the largest levels are cut."""
    return DlibLevelsDetector(model, threads=6)


def _sizes(detector: DlibLevelsDetector, image: np.ndarray) -> list[tuple[int, int]]:
    return [level.shape[:2] for level in detector.levels(image)]


def test_two_threads_scan_levels_whole_and_more_threads_cut_the_large_ones(model, banded) -> None:
    image = np.zeros((1152, 2048, 3), np.uint8)
    two = DlibLevelsDetector(model, threads=2)
    sizes = _sizes(two, image)
    assert two.plan(sizes) == [dlib_levels.Band(lvl, 0, rows, -dlib_levels._FAR, dlib_levels._FAR)
                               for lvl, (rows, _) in enumerate(sizes)]
    plan = banded.plan(sizes)
    for lvl, (rows, _) in enumerate(sizes):
        bands = [b for b in plan if b.level == lvl]
        assert [b.level for b in plan] == sorted(b.level for b in plan)  # level order: level 0 is ready first
        # The owned rows tile the level; each band reads the overlap beyond them, on the cell grid.
        assert bands[0].own_from < 0 and bands[-1].own_to >= rows
        for before, after in zip(bands, bands[1:], strict=False):
            assert before.own_to == after.own_from and after.own_from % CELL == 0
            assert after.start == after.own_from - BAND_OVERLAP and after.start % CELL == 0
            assert before.stop == min(rows, before.own_to + BAND_OVERLAP)
            assert before.own_to - max(before.own_from, 0) >= banded.min_band_rows // 2
    assert len([b for b in plan if b.level == 0]) >= 2, "level 0 holds ~30 % of the pixels: cut for 6 threads"


@pytest.fixture(scope="module")
def every_window(model, tmp_path_factory):
    """(ours, dlib's) with non-maximum suppression off: every window over the threshold comes back,
    hundreds of them (at −1.5) next to the cuts, each compared with dlib's."""
    loose = dataclasses.replace(model, nms_iou=1.0, nms_covered=1.0)
    path = tmp_path_factory.mktemp("hog") / "no_nms.svm"
    path.write_bytes(serialize_hog_detector(model, nms=(1.0, 1.0)))
    return DlibLevelsDetector(loose, threads=6), dlib.fhog_object_detector(str(path))


@pytest.mark.parametrize("photo", ["people/test/obama_and_biden.jpg", "misc/two_people.jpg",
                                   "misc/obama-1080p.jpg", "people/test/kit_with_rose.jpg"])
def test_banded_scan_equals_dlib(photo: str, banded: DlibLevelsDetector, dlib_hog, every_window) -> None:
    image = load(photo, long_side=2048)
    assert any(b.start > 0 for b in banded.plan(_sizes(banded, image))), "the photo's levels are cut"
    for adjust in (0.0, -0.5):
        assert as_tuples(banded.detect(image, 0, adjust)) == dlib_run(dlib_hog, image, 0, adjust)
    ours, theirs = every_window
    windows = sorted(dlib_run(theirs, image, 0, -1.5))
    assert sorted(as_tuples(ours.detect(image, 0, -1.5))) == windows
    assert len(windows) > 200
    gray = np.ascontiguousarray(image[..., 1])
    assert sorted(as_tuples(ours.detect(gray, 0, -1.5))) == sorted(dlib_run(theirs, gray, 0, -1.5))


def test_a_smaller_overlap_changes_windows_near_the_cuts(every_window, monkeypatch) -> None:
    """The overlap is needed: with two cells less, windows next to a cut score otherwise."""
    ours, theirs = every_window
    image = load("people/test/obama_and_biden.jpg", long_side=2048)
    windows = sorted(dlib_run(theirs, image, 0, -1.5))
    monkeypatch.setattr(dlib_levels, "BAND_OVERLAP", BAND_OVERLAP - 2 * CELL)
    assert sorted(as_tuples(ours.detect(image, 0, -1.5))) != windows


def test_a_failing_pyramid_fails_the_call_without_stranding_the_threads(model, monkeypatch) -> None:
    detector = DlibLevelsDetector(model, threads=3)
    image = load("misc/obama-720p.jpg")
    expected = detector.detect(image)
    calls = 0
    real_down = detector._down

    def broken(level):
        nonlocal calls
        calls += 1
        if calls == 3:
            raise MemoryError("no room for a pyramid level")
        return real_down(level)

    monkeypatch.setattr(detector, "_down", broken)
    with pytest.raises(MemoryError, match="pyramid level"):
        detector.detect(image)
    monkeypatch.setattr(detector, "_down", real_down)
    assert detector.detect(image) == expected  # the pool is free again
    assert not [t for t in threading.enumerate() if t.name.startswith("hog-level") and not t.is_alive()]


def test_callers_at_once_get_their_own_answers(banded: DlibLevelsDetector) -> None:
    images = [load(p, long_side=1400) for p in ("people/test/obama_and_biden.jpg", "misc/two_people.jpg",
                                                 "misc/obama-1080p.jpg")]
    expected = [banded.detect(im) for im in images]
    results: dict[int, list] = {}

    def call(i: int) -> None:
        results[i] = banded.detect(images[i % 3])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(results[i] == expected[i % 3] for i in range(9))
