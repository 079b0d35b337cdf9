"""Which runtime and device the networks run on, from the settings and the machine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from face_engine.settings import EngineSettings
from face_engine.types import Device, Runtime


def _cuda_available() -> bool:
    try:
        from face_engine.sessions.torch_session import cuda_available
    except ImportError:  # torch not installed: ONNX Runtime or dlib only
        return False
    return cuda_available()


def resolve(settings: EngineSettings) -> tuple[Runtime, str]:
    """(runtime, device): `auto` means torch on CUDA when a GPU is present, else ONNX on the CPU."""
    runtime, device = settings.runtime, settings.device
    if runtime is Runtime.DLIB:
        return Runtime.DLIB, "cpu"
    if runtime is Runtime.ONNX:
        if device is Device.CUDA:
            raise ValueError("FACE_ENGINE_RUNTIME=onnx runs on the CPU; use torch (or auto) for CUDA")
        return Runtime.ONNX, "cpu"
    cuda = device is not Device.CPU and _cuda_available()
    if device is Device.CUDA and not cuda:
        raise RuntimeError("FACE_ENGINE_DEVICE=cuda but no CUDA device is available")
    if runtime is Runtime.TORCH:
        return Runtime.TORCH, "cuda" if cuda else "cpu"
    return (Runtime.TORCH, "cuda") if cuda else (Runtime.ONNX, "cpu")


def network_session(settings: EngineSettings, network: Literal["resnet", "mmod"]) -> Any:
    """A session running one of dlib's networks on the resolved runtime.

    ResNet sessions have ``embed(chips)``, MMOD sessions ``detect(image, upsample)``; each runtime
    is imported only here, when first needed.
    """
    runtime, device = resolve(settings)
    if runtime is Runtime.DLIB:
        from face_engine.sessions import dlib_session

        return dlib_session.ResNetSession() if network == "resnet" else dlib_session.CnnDetectorSession()
    if runtime is Runtime.ONNX:
        from face_engine.sessions import onnx_session

        onnx_kind = onnx_session.OnnxResNetSession if network == "resnet" else onnx_session.OnnxMmodSession
        return onnx_kind(data_dir=settings.data_dir, threads=settings.threads)
    from face_engine.sessions import torch_session

    if network == "resnet":
        return torch_session.TorchResNetSession(data_dir=settings.data_dir, device=device,
                                                precision=settings.precision, threads=settings.threads)
    return torch_session.TorchMmodSession(data_dir=settings.data_dir, device=device,
                                          precision=settings.detector_precision, threads=settings.threads,
                                          max_batch_size=settings.max_batch_size)


def device_search(settings: EngineSettings) -> Callable[[Any], Any] | None:
    """On a GPU, exact gallery search as one matrix product there; None: FAISS on the CPU."""
    runtime, device = resolve(settings)
    if runtime is not Runtime.TORCH or device != "cuda":
        return None
    from face_engine.sessions.torch_session import TorchExactSearch

    return lambda vectors: TorchExactSearch(vectors, device)


def jpeg_decoder(settings: EngineSettings) -> Callable[[list[bytes]], list[Any]] | None:
    """On a GPU with torchvision, a batch JPEG decoder running there (nvJPEG); else None."""
    runtime, device = resolve(settings)
    if runtime is not Runtime.TORCH or device != "cuda":
        return None
    from face_engine.sessions.torch_session import TorchJpegDecoder

    try:
        return TorchJpegDecoder(device).decode_many
    except ImportError:  # torchvision is optional
        return None


def hog_session(settings: EngineSettings) -> Any:
    """dlib's HOG face detector, with ``detect(image, upsample)``: dlib's own on the dlib runtime
    (the reference); its pyramid levels scanned in parallel on the CPU runtimes (dlib's C++ scan on
    every core for one image: the same boxes and scores, face_engine/port/hog/dlib_levels.py); the
    port in torch on CUDA (every level of a batch on the GPU). The torch port is exact on the CPU
    too, but 4–5× slower there than dlib's C++ (docs/performance.md)."""
    runtime, device = resolve(settings)
    if runtime is Runtime.DLIB:
        from face_engine.sessions.dlib_session import HogDetectorSession

        return HogDetectorSession()
    from face_engine.sessions.hog_port_session import HogPortSession

    if runtime is Runtime.TORCH and device == "cuda":
        return HogPortSession(backend="torch", device="cuda")
    return HogPortSession(backend="dlib-levels", threads=settings.threads)
