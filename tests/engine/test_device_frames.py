"""Frames that stay on the torch device: the GPU path, run on the CPU's torch device.

On CUDA, JPEGs are decoded there (nvJPEG) and the frames stay there: the resize, the HOG port, the
CNN (its score maps thresholded there), the landmarks and the chips read them in place, and the chips
go to the embedder as they are. Here a stand-in decoder hands the pipeline tensors instead of arrays
(torchvision's nvJPEG needs CUDA); every face must equal the array path's, to the bit."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from face_engine.pipeline import FacePipeline
from face_engine.settings import EngineSettings
from face_engine.types import DetectorKind, ImageFaces, Runtime

DATA = Path(__file__).resolve().parents[1] / "data"
# 720p and 2000×1428 are shrunk to the 1024-px cap, the 240p photo is upsampled by the HOG itself,
# the PNG is decoded on the host (only plain JPEGs go to the device decoder), and the tilted face is
# one HOG misses: the CNN finds it.
PHOTOS = ("misc/obama-720p.jpg", "people/test/obama_and_biden.jpg", "misc/obama-240p.jpg",
          "misc/lin-manuel-miranda.png")
SETTINGS = EngineSettings(runtime=Runtime.TORCH, detector=DetectorKind.HOG_CNN, min_face_size=40,
                          detection_max_side=1024)


def _tilted_jpeg() -> bytes:
    tilted = Image.open(DATA / "misc" / "obama_partial_face2.jpg").convert("RGB")
    out = io.BytesIO()
    tilted.rotate(45, expand=True, fillcolor=(128, 128, 128)).save(out, "JPEG", quality=95)
    return out.getvalue()


@pytest.fixture(scope="module")
def blobs() -> list[bytes]:
    return [(DATA / p).read_bytes() for p in PHOTOS] + [_tilted_jpeg()]


@pytest.fixture(scope="module")
def on_arrays() -> FacePipeline:
    return FacePipeline(SETTINGS)


class _Spy:
    """Wraps a session method and records the types it was handed."""

    def __init__(self, target, name: str) -> None:
        self.seen: list[str] = []
        real = getattr(target, name)

        def spy(first, *args, **kwargs):
            items = first if isinstance(first, list | tuple) else [first]
            self.seen.extend(type(x).__name__ for x in items)
            return real(first, *args, **kwargs)

        setattr(target, name, spy)


@pytest.fixture(scope="module")
def on_device():
    """The torch runtime with the GPU's choices: frames decoded into tensors, the HOG port in torch."""
    from face_engine.models.detector import _Sessions
    from face_engine.sessions.hog_port_session import HogPortSession

    pipeline = FacePipeline(SETTINGS)
    pipeline.load()

    def decode_to_tensors(data: list[bytes]) -> list[torch.Tensor]:  # nvJPEG's stand-in
        return [torch.from_numpy(np.array(pipeline.decode(blob))) for blob in data]

    pipeline._gpu_jpeg = decode_to_tensors  # type: ignore[method-assign]
    sessions = pipeline.detector.load()
    pipeline.detector._session = _Sessions(HogPortSession(backend="torch", device="cpu"), sessions.cnn)
    spies = {
        "hog": _Spy(pipeline.detector._session.hog, "detect_many"),
        "cnn": _Spy(sessions.cnn, "detect_many"),
        "landmarks": _Spy(pipeline.landmarks.load(), "align_tensors"),
        "embed": _Spy(pipeline.embedder.load(), "embed"),
    }
    return pipeline, spies


def test_device_frames_give_the_array_paths_faces(blobs, on_arrays, on_device) -> None:
    pipeline, spies = on_device
    want = on_arrays.analyze_bytes(blobs)
    got = pipeline.analyze_bytes(blobs)
    assert [len(r.faces) for r in got] == [len(r.faces) for r in want] == [1, 3, 1, 1, 1]
    for a, b in zip(got, want, strict=True):
        assert isinstance(a, ImageFaces) and isinstance(b, ImageFaces)
        assert (a.width, a.height) == (b.width, b.height)
        for x, y in zip(a.faces, b.faces, strict=True):
            assert x.box == y.box and x.score == y.score and x.landmarks == y.landmarks
            assert isinstance(x.chip, np.ndarray) and np.array_equal(x.chip, y.chip)
            assert isinstance(x.embedding, np.ndarray) and np.array_equal(x.embedding, y.embedding)
    # What each stage was handed: the JPEGs' frames as tensors (the PNG as an array), the chips as
    # one tensor.
    assert sorted(spies["hog"].seen) == ["Tensor"] * 4 + ["ndarray"]
    assert spies["cnn"].seen == ["Tensor"], "the CNN ran on the tilted face's frame, in place"
    assert spies["landmarks"].seen.count("Tensor") == 4 and spies["landmarks"].seen.count("ndarray") == 1
    assert spies["embed"].seen and set(spies["embed"].seen) == {"Tensor"}


def test_the_cnn_keeps_its_score_maps_on_the_device_and_decodes_as_dlib_does(blobs, on_arrays) -> None:
    """Thresholded on the device, only the cells over it come back: the same detections as the
    dense decoding of the whole score map on the host (the ONNX session's)."""
    image = on_arrays.decode(blobs[-1])
    torch_cnn = on_arrays.detector.load().cnn
    onnx = FacePipeline(EngineSettings(runtime=Runtime.ONNX, detector=DetectorKind.CNN)).detector.load().cnn
    for upsample in (0, 1):
        sparse = torch_cnn.detect_many([torch.from_numpy(np.array(image))], upsample)[0]
        dense = onnx.detect(image, upsample)
        assert [d.box for d in sparse] == [d.box for d in dense] and sparse
        assert max(abs(a.score - b.score) for a, b in zip(sparse, dense, strict=True)) < 1e-4


def test_frames_are_refused_as_arrays_are() -> None:
    from face_engine.port.hog.torch_hog import _detector_frame
    from face_engine.sessions.torch_session import _checked_frame

    for bad in (torch.zeros((4, 4, 3), dtype=torch.float32), torch.zeros((4, 4, 4), dtype=torch.uint8)):
        with pytest.raises(ValueError, match="uint8|8bit"):
            _checked_frame(bad, 0)
        with pytest.raises(ValueError, match="8bit"):
            _detector_frame(bad)
    gray = torch.arange(12, dtype=torch.uint8).reshape(3, 4)
    assert torch.equal(_checked_frame(gray, 0)[..., 2], gray)  # r = g = b, as dlib assigns gray
