from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from face_engine.models.base import Model
from face_engine.runtime import network_session
from face_engine.settings import EngineSettings
from face_engine.types import Embedding, RGBImage


class Embedder(Model[Any]):
    """dlib's ResNet: the same embedding space on every runtime (the port equals dlib to 1e-6)."""

    name = "dlib-resnet-v1"

    def __init__(self, settings: EngineSettings) -> None:
        super().__init__()
        self.settings = settings
        self.max_batch_size = settings.max_batch_size

    def _create_session(self) -> Any:
        return network_session(self.settings, "resnet")

    def predict(self, chips: Sequence[RGBImage]) -> list[Embedding]:
        session = self.load()
        out: list[Embedding] = []
        for start in range(0, len(chips), self.max_batch_size):
            out.extend(session.embed(chips[start : start + self.max_batch_size]))
        return out
