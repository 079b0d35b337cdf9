"""ONNX Runtime on the CPU: the ported ResNet and MMOD detector network (the default runtime)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from face_engine.port.convert import detector_config, detector_onnx_path, resnet_onnx_path
from face_engine.port.detector import Detector
from face_engine.types import BoundingBox, Detection, Embedding, RGBImage


def _threads(threads: int) -> int:
    return threads or os.cpu_count() or 1


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = _threads(threads)
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxResNetSession:
    """uint8 N×150×150×3 chips → N×128 descriptors."""

    def __init__(self, *, data_dir: str | None, threads: int) -> None:
        self._session = _session(resnet_onnx_path(data_dir or None), threads)
        self._input = self._session.get_inputs()[0].name

    def embed(self, chips: Sequence[RGBImage]) -> list[Embedding]:
        if not len(chips):
            return []
        batch = np.ascontiguousarray(np.stack(chips), dtype=np.uint8)
        out = self._session.run(None, {self._input: batch})[0]
        return list(np.asarray(out, dtype=np.float32))


def dlib_rect_to_box(left: int, top: int, right: int, bottom: int) -> BoundingBox:
    """dlib's inclusive rectangle → our (top, right, bottom, left) with exclusive right/bottom."""
    return BoundingBox(top=top, right=right + 1, bottom=bottom + 1, left=left)


class OnnxMmodSession:
    """dlib's CNN face detector: the ported pyramid and decoding around the ONNX network."""

    def __init__(self, *, data_dir: str | None, threads: int) -> None:
        session = _session(detector_onnx_path(data_dir or None), threads)
        name = session.get_inputs()[0].name
        self._detector = Detector(lambda batch: session.run(None, {name: batch})[0],
                                  detector_config(data_dir or None))

    def detect(self, image: RGBImage, upsample: int) -> list[Detection]:
        found = self._detector.detect(image, upsample)
        return [Detection(dlib_rect_to_box(*d[:4]), float(d[4])) for d in found]
