"""The hostile corpus itself: large enough, the same on every run, and each case's expected outcome
is what the engine's decoder answers (the server's answers are checked by tests/hostile/run.py)."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from face_engine.decode import decode_image
from face_engine.types import ImageError
from tests.hostile.corpus import OK, build

LIMITS = {"max_upload_bytes": 10 * 1024 * 1024, "max_image_pixels": 40_000_000}
FAMILIES = {"truncated", "bit_flips", "magic", "dimensions", "bombs", "metadata", "modes", "unsupported", "sizes",
            "shapes"}


@pytest.fixture(scope="module")
def corpus():
    return build(**LIMITS)


def digest(cases) -> str:
    return hashlib.sha256(b"".join(c.name.encode() + hashlib.sha256(c.data).digest() for c in cases)).hexdigest()


def test_the_corpus_has_over_a_thousand_distinct_cases_in_every_family(corpus):
    assert len(corpus) >= 1000
    assert set(Counter(c.family for c in corpus)) == FAMILIES
    assert len({(c.family, c.name) for c in corpus}) == len(corpus)
    assert all(c.expect for c in corpus)


def test_the_corpus_is_the_same_on_every_build(corpus):
    assert digest(build(**LIMITS)) == digest(corpus)


def test_the_limits_move_the_cases_at_the_edges():
    small = build(max_upload_bytes=1024 * 1024, max_image_pixels=4_000_000)
    sizes = {c.name: len(c.data) for c in small if c.family == "sizes"}
    assert sizes["jpeg-exactly-max"] == 1024 * 1024 and sizes["jpeg-max-plus-1"] == 1024 * 1024 + 1
    assert {c.name for c in small if c.family == "bombs"} >= {"png-6000x666", "png-6000x667"}


def test_every_case_gets_an_outcome_it_allows_from_the_decoder(corpus):
    wrong = []
    for case in corpus:
        try:
            decode_image(case.data, max_bytes=LIMITS["max_upload_bytes"], max_pixels=LIMITS["max_image_pixels"])
            outcome = OK
        except ImageError as exc:
            outcome = exc.code
        if outcome not in case.expect:
            wrong.append(f"{case.family}/{case.name}: {outcome}, expected {sorted(case.expect)}")
    assert not wrong, "\n".join(wrong)
