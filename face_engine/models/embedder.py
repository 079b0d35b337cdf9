from __future__ import annotations

from collections.abc import Sequence

from face_engine.models.base import Model
from face_engine.sessions.dlib_session import ResNetSession
from face_engine.types import Embedding, RGBImage


class Embedder(Model[ResNetSession]):
    name = "dlib-resnet-v1"

    def __init__(self, *, max_batch_size: int) -> None:
        super().__init__()
        self.max_batch_size = max_batch_size

    def _create_session(self) -> ResNetSession:
        return ResNetSession()

    def predict(self, chips: Sequence[RGBImage]) -> list[Embedding]:
        session = self.load()
        out: list[Embedding] = []
        for start in range(0, len(chips), self.max_batch_size):
            out.extend(session.embed(chips[start : start + self.max_batch_size]))
        return out
