"""Conversion cache: keyed by the weight file's sha256, reused on later loads, safe to load."""

from __future__ import annotations

import hashlib
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from face_engine.port import convert  # noqa: E402
from face_engine.port.mmod import build_detector  # noqa: E402
from face_engine.port.resnet import build_resnet  # noqa: E402
from face_engine.weights import MMOD_DETECTOR, RESNET, weight_path  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def chips() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, size=(5, 150, 150, 3), dtype=np.uint8)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _refuse_conversion(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_args):
        raise AssertionError("the cache should have been used, not a new conversion")

    monkeypatch.setattr(convert, "_CONVERTERS", {RESNET: fail, MMOD_DETECTOR: fail})


def test_resnet_cache_is_keyed_by_hash_and_reused(
    tmp_path: Path, chips: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = convert.load_resnet(tmp_path)
    weights = weight_path(RESNET)
    folder = tmp_path / "dlib-port" / f"{weights.stem}-{_sha256(weights)}"
    assert convert.cache_dir(weights, tmp_path) == folder
    assert {p.name for p in folder.iterdir()} == {"spec.json", "state.pt", "model.onnx"}
    spec = json.loads((folder / "spec.json").read_text())
    assert spec["sha256"] == _sha256(weights) and spec["source"] == RESNET
    assert list((tmp_path / "dlib-port").iterdir()) == [folder]  # no temporary leftovers

    _refuse_conversion(monkeypatch)
    second = convert.load_resnet(tmp_path)
    assert convert.resnet_onnx_path(tmp_path) == folder / "model.onnx"
    a, b = first.embed(chips), second.embed(chips)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, build_resnet(weights).embed(chips))  # same as a fresh parse


def test_state_is_plain_tensors_loaded_without_pickle_objects(port_cache: Path) -> None:
    folder = convert.resnet_onnx_path(port_cache).parent
    state = torch.load(folder / "state.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) and v.dtype == torch.float32 for v in state.values())


def test_a_state_file_with_arbitrary_objects_is_refused(tmp_path: Path) -> None:
    torch.save({"w": Path("/etc/passwd")}, tmp_path / "state.pt")  # an arbitrary object
    with pytest.raises(pickle.UnpicklingError):
        convert._load_state(tmp_path)


def test_detector_cache_and_incomplete_cache_is_rebuilt(tmp_path: Path) -> None:
    onnx_path = convert.detector_onnx_path(tmp_path)
    weights = weight_path(MMOD_DETECTOR)
    assert onnx_path.parent.name == f"{weights.stem}-{_sha256(weights)}"
    onnx_path.unlink()  # as if a previous conversion had died half way
    assert convert.detector_onnx_path(tmp_path) == onnx_path and onnx_path.is_file()


def test_cached_detector_equals_fresh_build(port_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = build_detector(weight_path(MMOD_DETECTOR))
    convert.load_detector(port_cache)  # make sure it exists, then forbid converting again
    _refuse_conversion(monkeypatch)
    cached = convert.load_detector(port_cache)
    image = np.random.default_rng(0).integers(0, 256, size=(90, 120, 3), dtype=np.uint8)
    data, _ = cached.input_tensor(image)
    np.testing.assert_array_equal(cached.runner(data[None]), fresh.runner(data[None]))


def test_onnx_models_have_dynamic_shapes(port_cache: Path, chips: np.ndarray) -> None:
    resnet = ort.InferenceSession(str(convert.resnet_onnx_path(port_cache)), providers=["CPUExecutionProvider"])
    for n in (1, 5):
        (out,) = resnet.run(None, {"chips": chips[:n]})
        assert out.shape == (n, 128) and out.dtype == np.float32
    det = ort.InferenceSession(str(convert.detector_onnx_path(port_cache)), providers=["CPUExecutionProvider"])
    net = convert.load_detector_net(port_cache)
    for h, w in ((100, 140), (173, 61)):
        x = np.random.default_rng(h).standard_normal((1, 3, h, w)).astype(np.float32)
        (scores,) = det.run(None, {"pyramid": x})
        expected = net(torch.from_numpy(x)).detach().numpy()
        assert scores.shape == expected.shape
        np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-4)


def test_data_dir_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(convert.DATA_DIR_ENV, str(tmp_path / "from-env"))
    assert convert.data_root() == tmp_path / "from-env"
    assert convert.data_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv(convert.DATA_DIR_ENV)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert convert.data_root() == tmp_path / ".cache" / "facerec"


def test_engine_and_numpy_modules_do_not_import_torch() -> None:
    code = (
        "import sys, face_engine, face_engine.port, face_engine.port.dat_format, "
        "face_engine.port.chip, face_engine.port.detector, face_engine.port.convert; "
        "bad = {'torch', 'onnxruntime'} & set(sys.modules); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
