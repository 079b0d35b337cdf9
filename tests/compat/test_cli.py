"""The face_recognition and face_detection command lines: the original's options and line format,
the same lines as the original prints, progress on request, and bad input answered with a message
and a non-zero status, never a traceback."""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner
from PIL import Image

from face_engine.compat import api, face_detection_cli, face_recognition_cli


def run(main, *args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def line(path, box):
    """face_detection's line: path,top,right,bottom,left."""
    return ",".join([str(path), *map(str, box)])


@pytest.fixture(scope="module")
def known(tmp_path_factory, misc):
    folder = tmp_path_factory.mktemp("known")
    shutil.copy(misc / "obama.jpg", folder / "obama.jpg")
    shutil.copy(misc / "biden.jpg", folder / "biden.jpg")
    return folder


@pytest.fixture(scope="module")
def unknown(tmp_path_factory, misc):
    folder = tmp_path_factory.mktemp("unknown")
    for name in ("obama2.jpg", "two_people.jpg"):
        shutil.copy(misc / name, folder / name)
    shutil.copy(misc.parent / "people" / "test" / "kit_with_rose.jpg", folder / "kit_with_rose.jpg")
    Image.new("RGB", (200, 150), "grey").save(folder / "empty.png")
    (folder / "readme.txt").write_text("not an image, and not named like one")
    return folder


def test_known_people_are_named_in_each_image(known, unknown):
    result = run(face_recognition_cli.main, known, unknown)
    assert result.exit_code == 0
    assert sorted(result.stdout.splitlines()) == sorted([
        f"{unknown / 'obama2.jpg'},obama",
        f"{unknown / 'two_people.jpg'},obama", f"{unknown / 'two_people.jpg'},biden",
        f"{unknown / 'kit_with_rose.jpg'},unknown_person", f"{unknown / 'kit_with_rose.jpg'},unknown_person",
        f"{unknown / 'empty.png'},no_persons_found",
    ])
    single = run(face_recognition_cli.main, known, unknown / "obama2.jpg")
    assert single.stdout == f"{unknown / 'obama2.jpg'},obama\n"


def test_distances_and_tolerance(known, misc):
    shown = run(face_recognition_cli.main, known, misc / "obama.jpg", "--show-distance", "1")
    assert shown.stdout == f"{misc / 'obama.jpg'},obama,0.0\n"
    other = run(face_recognition_cli.main, known, misc / "obama2.jpg", "--show-distance", "true")
    path, name, distance = other.stdout.strip().split(",")
    assert name == "obama" and 0 < float(distance) <= 0.6
    strict = run(face_recognition_cli.main, known, misc / "obama2.jpg", "--tolerance", str(float(distance) / 2),
                 "--show-distance", "1")
    assert strict.stdout == f"{misc / 'obama2.jpg'},unknown_person,None\n"


def test_cpus_and_progress_do_not_change_the_lines(known, unknown):
    plain = run(face_recognition_cli.main, known, unknown)
    progress = run(face_recognition_cli.main, known, unknown, "--progress", "--cpus", "-1")
    assert progress.exit_code == 0 and progress.stdout == plain.stdout
    assert "known people" in progress.stderr and "images" in progress.stderr and "4/4" in progress.stderr
    assert "images" not in plain.stderr


def test_an_unreadable_image_is_reported_and_skipped(known, unknown, tmp_path):
    for path in unknown.iterdir():
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    result = run(face_recognition_cli.main, known, tmp_path)
    assert result.exit_code == 1
    assert f"cannot read {tmp_path / 'broken.jpg'}" in result.stderr
    assert f"{tmp_path / 'obama2.jpg'},obama" in result.stdout


def test_known_people_without_a_single_face(tmp_path, misc):
    shutil.copy(misc / "two_people.jpg", tmp_path / "pair.jpg")
    Image.new("RGB", (100, 100)).save(tmp_path / "nobody.png")
    result = run(face_recognition_cli.main, tmp_path, misc / "obama_small.jpg")
    assert result.exit_code == 0
    assert f"More than one face found in {tmp_path / 'pair.jpg'}" in result.stdout
    assert f"No faces found in {tmp_path / 'nobody.png'}. Ignoring file." in result.stdout
    assert result.stdout.splitlines()[-1] == f"{misc / 'obama_small.jpg'},unknown_person"


@pytest.mark.parametrize(("args", "message"), [
    (["/no/such/folder", "x.jpg"], "does not exist"),
    (["{known}", "/no/such/image.jpg"], "does not exist"),
    (["{misc}/obama.jpg", "{misc}/obama.jpg"], "is a file"),
    (["{known}", "{misc}/obama.jpg", "--cpus", "0"], "--cpus"),
    (["{known}", "{misc}/obama.jpg", "--tolerance", "close"], "--tolerance"),
])
def test_bad_arguments_give_a_clear_error(args, message, known, misc):
    result = run(face_recognition_cli.main, *[a.format(known=known, misc=misc) for a in args])
    assert result.exit_code == 2 and message in result.stderr


def test_detection_lines(misc, photo, unknown):
    result = run(face_detection_cli.main, misc / "two_people.jpg")
    assert result.exit_code == 0
    expected = [line(misc / "two_people.jpg", box) for box in api.face_locations(photo("two_people.jpg"), 0)]
    assert result.stdout.splitlines() == expected and len(expected) == 2
    folder = run(face_detection_cli.main, unknown, "--cpus", "2", "--progress")
    assert folder.exit_code == 0 and "empty.png" not in folder.stdout
    assert sorted(line.split(",")[0] for line in folder.stdout.splitlines()) == sorted(
        [str(unknown / "obama2.jpg")] + [str(unknown / "two_people.jpg")] * 2
        + [str(unknown / "kit_with_rose.jpg")] * 2)
    assert "4/4" in folder.stderr


def test_detection_model_and_upsample(misc, photo):
    hog = run(face_detection_cli.main, misc / "obama_small.jpg", "--model", "hog", "--upsample", "1")
    assert hog.stdout.splitlines() == [line(misc / "obama_small.jpg", box)
                                       for box in api.face_locations(photo("obama_small.jpg"), 1)]
    cnn = run(face_detection_cli.main, misc / "obama-480p.jpg", "--model", "CNN")
    (box,) = api.face_locations(photo("obama-480p.jpg"), 0, "cnn")
    assert cnn.exit_code == 0 and cnn.stdout == line(misc / "obama-480p.jpg", box) + "\n"


@pytest.mark.parametrize("args", [["--model", "svm"], ["--upsample", "-1"], ["--cpus", "-2"]])
def test_detection_bad_options(args, misc):
    result = run(face_detection_cli.main, misc / "obama_small.jpg", *args)
    assert result.exit_code == 2 and "Error" in result.stderr


def test_detection_of_a_missing_or_unreadable_file(tmp_path):
    assert run(face_detection_cli.main, tmp_path / "gone.jpg").exit_code == 2
    (tmp_path / "broken.png").write_bytes(b"\x89PNG but no more")
    result = run(face_detection_cli.main, tmp_path / "broken.png")
    assert result.exit_code == 1 and "cannot read" in result.stderr and result.stdout == ""


def test_the_same_lines_as_the_original(known, unknown):
    """face_recognition 1.3 itself (dlib), when installed, prints what we print: the same lines, but
    for the distances' last digits (the encodings agree to 1e-6, not to every bit)."""
    try:
        from face_engine.bench.compat import import_original

        import_original()
        from face_recognition import face_detection_cli as original_fd
        from face_recognition import face_recognition_cli as original_fr
    except ImportError as exc:
        pytest.skip(f"face_recognition 1.3 is not installed ({exc}); make setup installs it")
    from PIL import ImageFile

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # the original's import must not change the process's decoding
    for ours, theirs, args in [
        (face_recognition_cli.main, original_fr.main, [known, unknown]),
        (face_detection_cli.main, original_fd.main, [unknown]),
    ]:
        mine, original = run(ours, *args), run(theirs, *args)
        assert mine.exit_code == original.exit_code == 0
        assert mine.stdout == original.stdout and mine.stdout
    mine = run(face_recognition_cli.main, known, unknown / "two_people.jpg", "--show-distance", "1")
    original = run(original_fr.main, known, unknown / "two_people.jpg", "--show-distance", "1")
    rows = [(line.rsplit(",", 1), other.rsplit(",", 1))
            for line, other in zip(mine.stdout.splitlines(), original.stdout.splitlines(), strict=True)]
    assert len(rows) == 2
    for (head, distance), (original_head, original_distance) in rows:
        assert head == original_head and abs(float(distance) - float(original_distance)) < 1e-5


def test_a_wrong_engine_setting_is_one_line(misc, monkeypatch):
    from face_engine.compat._models import MODELS

    monkeypatch.setattr(MODELS, "_settings", None)
    monkeypatch.setattr(MODELS, "_sessions", {})
    monkeypatch.setenv("FACE_ENGINE_RUNTIME", "tensorflow")
    result = run(face_detection_cli.main, misc / "obama_small.jpg", "--model", "cnn")
    assert result.exit_code == 1 and "FACE_ENGINE_RUNTIME must be one of" in result.stderr
