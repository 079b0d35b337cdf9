from __future__ import annotations

import threading
from typing import Any, Generic, TypeVar

SessionT = TypeVar("SessionT")


class Model(Generic[SessionT]):
    """Loads its runtime session on first use, once, behind a lock; never at import time."""

    name: str = "model"

    def __init__(self) -> None:
        self._session: SessionT | None = None
        self._lock = threading.Lock()

    def _create_session(self) -> SessionT:
        raise NotImplementedError

    @property
    def loaded(self) -> bool:
        return self._session is not None

    def load(self) -> SessionT:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._session = self._create_session()
        return self._session

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError
