"""PyTorch: the ported networks on CUDA (or the CPU), in fp32, TF32 or fp16."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from face_engine.port.convert import detector_config, load_detector_net, load_resnet
from face_engine.port.detector import Detector
from face_engine.port.mmod import MMODNet
from face_engine.sessions.onnx_session import dlib_rect_to_box
from face_engine.types import Detection, Embedding, Precision, RGBImage


def cuda_available() -> bool:
    return bool(torch.cuda.is_available())


def _configure(device: str, precision: Precision, threads: int) -> torch.dtype:
    """Set TF32 explicitly: PyTorch allows it in cuDNN convolutions by default, which moves
    embeddings by ~1e-3; fp32 means fp32 here."""
    if threads and device == "cpu":
        torch.set_num_threads(threads)
    if device.startswith("cuda"):
        allow = precision is Precision.TF32
        torch.backends.cudnn.allow_tf32 = allow
        torch.backends.cuda.matmul.allow_tf32 = allow
        return torch.float16 if precision is Precision.FP16 else torch.float32
    if precision is not Precision.FP32:
        raise ValueError(f"precision {precision.value} needs CUDA; use fp32 on the CPU")
    return torch.float32


class TorchResNetSession:
    def __init__(self, *, data_dir: str | None, device: str, precision: Precision, threads: int) -> None:
        self.device = torch.device(device)
        dtype = _configure(device, precision, threads)
        self._model = load_resnet(data_dir or None).to(self.device, dtype=dtype).eval()

    @torch.inference_mode()
    def embed(self, chips: Sequence[RGBImage]) -> list[Embedding]:
        if not len(chips):
            return []
        batch = torch.from_numpy(np.ascontiguousarray(np.stack(chips), dtype=np.uint8)).to(self.device)
        out = self._model(batch).float().cpu().numpy()
        return list(out)


class TorchMmodSession:
    def __init__(self, *, data_dir: str | None, device: str, precision: Precision, threads: int) -> None:
        self.device = torch.device(device)
        dtype = _configure(device, precision, threads)
        net: MMODNet = load_detector_net(data_dir or None).to(self.device, dtype=dtype).eval()

        @torch.inference_mode()
        def run(batch: np.ndarray) -> np.ndarray:
            x = torch.from_numpy(batch).to(self.device, dtype=dtype)
            out: np.ndarray = net(x).float().cpu().numpy()
            return out

        self._detector = Detector(run, detector_config(data_dir or None))

    def detect(self, image: RGBImage, upsample: int) -> list[Detection]:
        found = self._detector.detect(image, upsample)
        return [Detection(dlib_rect_to_box(*d[:4]), float(d[4])) for d in found]


class TorchExactSearch:
    """Exact L2 search as one matrix product on the device: ‖q‖² − 2·q·xᵀ + ‖x‖², then top-k.

    Queries go in chunks so the distance matrix stays within ``chunk × rows`` floats."""

    def __init__(self, vectors: np.ndarray, device: str, chunk: int = 256) -> None:
        self.device = torch.device(device)
        self._x = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)).to(self.device)
        self._norms = (self._x * self._x).sum(dim=1)
        self._chunk = chunk

    @torch.inference_mode()
    def search(self, queries: np.ndarray, k: int, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(squared distances, row numbers), nearest first; only ``rows`` when given."""
        x, norms = self._x, self._norms
        allowed = None
        if rows is not None:
            allowed = torch.from_numpy(rows).to(self.device)
            x, norms = x[allowed], norms[allowed]
        k = min(k, len(x))
        out_d, out_i = [], []
        for start in range(0, len(queries), self._chunk):
            q = torch.from_numpy(np.ascontiguousarray(queries[start : start + self._chunk])).to(self.device)
            d = (q * q).sum(dim=1, keepdim=True) - 2.0 * (q @ x.T) + norms
            values, index = torch.topk(d, k, dim=1, largest=False)
            if allowed is not None:
                index = allowed[index]
            out_d.append(values.clamp_min(0).cpu().numpy())
            out_i.append(index.cpu().numpy())
        return np.concatenate(out_d), np.concatenate(out_i).astype(np.int64)
