from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from face_engine.models.base import Model
from face_engine.runtime import resolve
from face_engine.settings import EngineSettings
from face_engine.types import Embedding, RGBImage, Runtime


class Embedder(Model[Any]):
    """dlib's ResNet: the same embedding space on every runtime (the port equals dlib to 1e-6)."""

    name = "dlib-resnet-v1"

    def __init__(self, settings: EngineSettings) -> None:
        super().__init__()
        self.settings = settings
        self.max_batch_size = settings.max_batch_size

    def _create_session(self) -> Any:
        runtime, device = resolve(self.settings)
        s = self.settings
        if runtime is Runtime.DLIB:
            from face_engine.sessions.dlib_session import ResNetSession

            return ResNetSession()
        if runtime is Runtime.ONNX:
            from face_engine.sessions.onnx_session import OnnxResNetSession

            return OnnxResNetSession(data_dir=s.data_dir, threads=s.threads)
        from face_engine.sessions.torch_session import TorchResNetSession

        return TorchResNetSession(data_dir=s.data_dir, device=device, precision=s.precision, threads=s.threads)

    def predict(self, chips: Sequence[RGBImage]) -> list[Embedding]:
        session = self.load()
        out: list[Embedding] = []
        for start in range(0, len(chips), self.max_batch_size):
            out.extend(session.embed(chips[start : start + self.max_batch_size]))
        return out
