"""Fixtures shared by the engine tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _few_torch_threads():
    """The test machine is small and shared: torch uses two threads at most."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(min(previous, 2))
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def port_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One conversion cache for the whole session, shared by the port test modules."""
    return tmp_path_factory.getbasetemp() / "facerec-port-cache"
