"""The 5 landmarks and the aligned chip of each face (never the 68-point model: its licence is
non-commercial).

dlib's shape predictor and face chip on the CPU (0.6 ms and ~1 ms a face, faster there than the
port, which does the same arithmetic in numpy); the port (face_engine/port/shape_torch.py,
chip_torch.py: the same points and chips, bit for bit) when the networks run on torch, where it
takes every face of a batch in one call and, on a GPU, computes the chips there."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from face_engine.models.base import Model
from face_engine.runtime import resolve
from face_engine.settings import EngineSettings
from face_engine.types import BoundingBox, Detection, RGBImage, Runtime

Points = tuple[tuple[float, float], ...]


class LandmarkModel(Model[Any]):
    # The points and chips are dlib's whichever session computes them: the model id stays.
    name = "dlib-shape-predictor-5"

    def __init__(self, settings: EngineSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or EngineSettings()

    def _create_session(self) -> Any:
        runtime, device = resolve(self.settings)
        if runtime is Runtime.TORCH:
            from face_engine.sessions.shape_port_session import TorchLandmarkSession

            return TorchLandmarkSession(device)
        from face_engine.sessions.dlib_session import LandmarkSession

        return LandmarkSession()

    def align_many(self, images: Sequence[RGBImage],
                   detections: Sequence[Sequence[Detection]]) -> list[tuple[list[Points], list[RGBImage]]]:
        """Per image: the points and the chip of each of its faces."""
        session = self.load()
        if hasattr(session, "align_many"):
            return list(session.align_many(images, [[d.box for d in found] for found in detections]))
        aligned = []
        for image, found in zip(images, detections, strict=True):
            shapes = [session.predict(image, d.box) for d in found]
            aligned.append(([session.points(s) for s in shapes], [session.chip(image, s) for s in shapes]))
        return aligned

    def align_batch(self, images: Sequence[Any],
                    detections: Sequence[Sequence[Detection]]) -> tuple[list[list[Points]], Any]:
        """(points per image, every face's chip in order): on torch the chips are one N×150×150×3
        tensor left on the device for the embedder; elsewhere a list of arrays. ``images`` may be
        tensors on the device (decoded there)."""
        session = self.load()
        if hasattr(session, "align_tensors"):
            return session.align_tensors(images, [[d.box for d in found] for found in detections])  # type: ignore[no-any-return]
        aligned = self.align_many(images, detections)
        return [points for points, _ in aligned], [chip for _, chips in aligned for chip in chips]

    def align(self, image: RGBImage, box: BoundingBox) -> tuple[Points, RGBImage]:
        """One face's points and chip."""
        points, chips = self.align_many([image], [[Detection(box, 0.0)]])[0]
        return points[0], chips[0]
