"""Runtime selection and the runtimes agreeing with the dlib reference through the pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from face_engine.pipeline import FacePipeline
from face_engine.runtime import resolve
from face_engine.settings import EngineSettings
from face_engine.types import DetectorKind, Device, Precision, Runtime

DATA = Path(__file__).resolve().parents[1] / "data"
PHOTOS = [DATA / "people" / "test" / "kit_with_rose.jpg", DATA / "misc" / "obama_small.jpg"]


def test_auto_is_onnx_on_a_machine_without_cuda():
    from face_engine.runtime import device_search

    assert resolve(EngineSettings()) == (Runtime.ONNX, "cpu")
    assert device_search(EngineSettings(runtime=Runtime.TORCH)) is None  # FAISS unless on CUDA
    assert resolve(EngineSettings(runtime=Runtime.TORCH)) == (Runtime.TORCH, "cpu")
    assert resolve(EngineSettings(runtime=Runtime.DLIB, device=Device.CUDA)) == (Runtime.DLIB, "cpu")


def test_impossible_combinations_are_refused_clearly():
    with pytest.raises(ValueError, match="onnx runs on the CPU"):
        resolve(EngineSettings(runtime=Runtime.ONNX, device=Device.CUDA))
    with pytest.raises(RuntimeError, match="no CUDA device"):
        resolve(EngineSettings(runtime=Runtime.TORCH, device=Device.CUDA))
    with pytest.raises(ValueError, match="FACE_ENGINE_RUNTIME"):
        EngineSettings.from_env({"FACE_ENGINE_RUNTIME": "tensorrt"})
    from face_engine.sessions.torch_session import TorchResNetSession

    with pytest.raises(ValueError, match="needs CUDA"):
        TorchResNetSession(data_dir=None, device="cpu", precision=Precision.FP16, threads=0)


@pytest.fixture(scope="module")
def reference():
    pipeline = FacePipeline(EngineSettings(runtime=Runtime.DLIB))
    return pipeline.analyze_bytes([p.read_bytes() for p in PHOTOS])


@pytest.mark.parametrize("runtime", [Runtime.ONNX, Runtime.TORCH])
def test_ported_runtimes_give_dlibs_embeddings(reference, runtime):
    """On torch the landmarks and chips are the port's too (batched): the same points and chips."""
    pipeline = FacePipeline(EngineSettings(runtime=runtime))
    results = pipeline.analyze_bytes([p.read_bytes() for p in PHOTOS])
    ported = type(pipeline.landmarks.load()).__name__ == "TorchLandmarkSession"
    assert ported == (runtime is Runtime.TORCH)
    for want, got in zip(reference, results, strict=True):
        assert [f.box for f in got.faces] == [f.box for f in want.faces]
        for a, b in zip(want.faces, got.faces, strict=True):
            assert a.landmarks == b.landmarks
            assert np.array_equal(a.chip, b.chip)
            assert np.abs(a.embedding - b.embedding).max() <= 1e-5


def test_ported_cnn_detector_equals_dlibs_through_the_pipeline():
    settings = dict(detector=DetectorKind.CNN, min_face_size=80, detection_max_side=480)
    photo = [PHOTOS[1].read_bytes()]
    want = FacePipeline(EngineSettings(runtime=Runtime.DLIB, **settings)).analyze_bytes(photo)[0]
    got = FacePipeline(EngineSettings(runtime=Runtime.ONNX, **settings)).analyze_bytes(photo)[0]
    assert [f.box for f in got.faces] == [f.box for f in want.faces] and len(got.faces) == 1
    assert abs(got.faces[0].score - want.faces[0].score) < 1e-4


def test_hog_with_cnn_fallback_finds_what_hog_misses():
    """A tilted, partly cut face that HOG misses is found by the CNN fallback."""
    from PIL import Image

    tilted = Image.open(DATA / "misc" / "obama_partial_face2.jpg").convert("RGB")
    image = np.asarray(tilted.rotate(45, expand=True, fillcolor=(128, 128, 128)))
    settings = dict(min_face_size=80, detection_max_side=640)
    hog = FacePipeline(EngineSettings(detector=DetectorKind.HOG, **settings)).analyze([image])[0]
    both = FacePipeline(EngineSettings(detector=DetectorKind.HOG_CNN, **settings)).analyze([image])[0]
    assert len(hog.faces) == 0 and len(both.faces) == 1


def test_the_detector_precision_follows_the_engine_unless_set():
    from face_engine.runtime import jpeg_decoder

    assert EngineSettings.from_env({}).detector_precision is Precision.FP32
    assert EngineSettings.from_env({"FACE_ENGINE_PRECISION": "fp16"}).detector_precision is Precision.FP16
    both = EngineSettings.from_env({"FACE_ENGINE_PRECISION": "fp32", "FACE_DETECTOR_PRECISION": "fp16"})
    assert (both.precision, both.detector_precision) == (Precision.FP32, Precision.FP16)
    with pytest.raises(ValueError, match="FACE_DETECTOR_PRECISION must be one of"):
        EngineSettings.from_env({"FACE_DETECTOR_PRECISION": "int8"})
    # On this CPU machine the torch detector session refuses fp16 instead of running it slowly.
    from face_engine.runtime import network_session

    with pytest.raises(ValueError, match="needs CUDA"):
        network_session(EngineSettings(runtime=Runtime.TORCH, detector_precision=Precision.FP16), "mmod")
    assert jpeg_decoder(EngineSettings(runtime=Runtime.TORCH)) is None  # nvJPEG only on CUDA


def test_the_hog_detector_follows_the_runtime():
    from face_engine.runtime import hog_session
    from face_engine.sessions.dlib_session import HogDetectorSession
    from face_engine.sessions.hog_port_session import HogPortSession

    assert isinstance(hog_session(EngineSettings(runtime=Runtime.DLIB)), HogDetectorSession)
    ported = hog_session(EngineSettings(runtime=Runtime.ONNX))
    assert isinstance(ported, HogPortSession) and ported.backend == "dlib-levels"


def test_the_torch_hog_batches_through_the_detector_with_dlibs_boxes():
    """The GPU path (images of one upsample in one call), run on the CPU: dlib's boxes and scores."""
    from face_engine.models.detector import Detector, _Work
    from face_engine.sessions.dlib_session import HogDetectorSession
    from face_engine.sessions.hog_port_session import HogPortSession

    images = [np.asarray(Image.open(p).convert("RGB").resize((320, 240))) for p in PHOTOS[:3]]
    works = [_Work(image, 0, image.shape[1], image.shape[0]) for image in images]
    batched = Detector._hog_many(HogPortSession(backend="torch", device="cpu"), works, map)
    reference = HogDetectorSession()
    assert batched == [reference.detect(image, 0) for image in images]
    assert any(batched)
