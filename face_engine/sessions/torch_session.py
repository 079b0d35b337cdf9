"""PyTorch: the ported networks on CUDA (or the CPU), in fp32, TF32 or fp16."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from face_engine.port.convert import detector_config, load_detector_net, load_resnet
from face_engine.port.detector import Detector, checked_image
from face_engine.port.mmod import MMODNet
from face_engine.port.torch_layers import fold_affines, pad_channels
from face_engine.port.torch_pyramid import TorchOps, tiled_pyramid_batch, upsample_planes
from face_engine.sessions.onnx_session import dlib_rect_to_box
from face_engine.types import Detection, Embedding, Precision, RGBImage

# Decoded images are read-only numpy arrays; torch warns when it wraps one, though the detector
# only reads it (to upload it). Copying each to silence the warning would cost more than it says.
warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)


def cuda_available() -> bool:
    return bool(torch.cuda.is_available())


def _configure(device: str, precision: Precision, threads: int) -> torch.dtype:
    if threads and device == "cpu":
        torch.set_num_threads(threads)
    if device.startswith("cuda"):
        return torch.float16 if precision is Precision.FP16 else torch.float32
    if precision is not Precision.FP32:
        raise ValueError(f"precision {precision.value} needs CUDA; use fp32 on the CPU")
    return torch.float32


@contextlib.contextmanager
def _math(precision: Precision) -> Iterator[None]:
    """TF32 on or off for one call: PyTorch allows it in cuDNN convolutions by default, which
    moves embeddings by ~1e-3, so fp32 means fp32 here. cuDNN picks its fastest algorithm per
    input shape (benchmark mode): shapes repeat, batch after batch."""
    allow = precision is Precision.TF32
    matmul = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = allow
    try:
        with torch.backends.cudnn.flags(enabled=True, benchmark=True, allow_tf32=allow):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul


class TorchResNetSession:
    def __init__(self, *, data_dir: str | None, device: str, precision: Precision, threads: int) -> None:
        self.device = torch.device(device)
        self.precision = precision
        dtype = _configure(device, precision, threads)
        model = load_resnet(data_dir or None)
        if self.device.type == "cuda":  # measured on an H100: fp32 +16%, fp16 +40% (docs/performance.md)
            model = fold_affines(model).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self._model = model.to(self.device, dtype=dtype).eval()

    def embed(self, chips: Sequence[RGBImage] | torch.Tensor) -> list[Embedding]:
        """Chips as uint8 150×150×3 arrays, or as one N×150×150×3 tensor (on the device: the torch
        landmark session's chips, which never leave it)."""
        if not len(chips):
            return []
        if isinstance(chips, torch.Tensor):
            batch = chips.to(self.device)
        else:
            batch = torch.from_numpy(np.ascontiguousarray(np.stack(chips), dtype=np.uint8)).to(self.device)
        count = len(batch)
        if self.device.type == "cuda":
            # cuDNN tunes its algorithms per input shape: batch sizes rounded up to a power of two
            # repeat, where the raw face counts of successive batches would make it tune each time.
            batch = torch.cat([batch, batch.new_zeros(((1 << (count - 1).bit_length()) - count, *batch.shape[1:]))])
        return list(self.embed_tensor(batch)[:count].float().cpu().numpy())

    @torch.inference_mode()
    def embed_tensor(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 N×150×150×3 chips already on the device → N×128 descriptors there."""
        with _math(self.precision):
            out: torch.Tensor = self._model(batch)
        return out


class TorchMmodSession:
    """The CNN detector with its pyramid built on the network's device: images of one size are
    stacked and go through the network together (``detect_many``)."""

    def __init__(self, *, data_dir: str | None, device: str, precision: Precision, threads: int,
                 max_batch_size: int = 32) -> None:
        self.device = torch.device(device)
        self.precision = precision
        self._dtype = _configure(device, precision, threads)
        net: MMODNet = load_detector_net(data_dir or None)
        # On CUDA, measured on an H100 (docs/performance.md): folding the affines gains 16% in
        # fp32; fp16 also wants channel counts in multiples of 8 and channels-last (2× more).
        self._channels_last = self.device.type == "cuda" and self._dtype == torch.float16
        if self.device.type == "cuda":
            fold_affines(net)
        if self._channels_last:
            pad_channels(net.body)
            net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self._net = net.to(self.device, dtype=self._dtype).eval()
        self._detector = Detector(self._run, detector_config(data_dir or None))
        self._ops = TorchOps(self.device)
        self._max_batch = max_batch_size

    @torch.inference_mode()
    def _run(self, batch: np.ndarray | torch.Tensor) -> np.ndarray:
        out: np.ndarray = self._scores(torch.as_tensor(batch)).cpu().numpy()
        return out

    def _scores(self, batch: torch.Tensor) -> torch.Tensor:
        """N×1×h×w float32 score maps, on the device."""
        x = batch.to(self.device, dtype=self._dtype)
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with _math(self.precision):
            out: torch.Tensor = self._net(x).float()
        return out

    def detect(self, image: RGBImage, upsample: int) -> list[Detection]:
        return self.detect_many([image], upsample)[0]

    @torch.inference_mode()
    def detect_many(self, images: Sequence[RGBImage | torch.Tensor], upsample: int) -> list[list[Detection]]:
        """Every image's faces, best first; equal to ``detect`` on each image. Images may be
        H×W×3 uint8 tensors already on the device (decoded there): they are used in place. The
        score maps stay on the device; only the cells over the threshold come back."""
        found: list[list[Detection]] = [[] for _ in images]
        checked = [_checked_frame(image, upsample) for image in images]
        by_size: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(checked):
            by_size.setdefault(image.shape, []).append(i)
        cfg = self._detector.config
        for same_size in by_size.values():
            for start in range(0, len(same_size), self._max_batch):
                chunk = same_size[start : start + self._max_batch]
                planes = torch.empty((len(chunk), *checked[chunk[0]].shape), dtype=torch.uint8, device=self.device)
                for row, i in enumerate(chunk):  # one upload per image, no stacked copy on the host
                    planes[row].copy_(checked[i])
                planes = upsample_planes(planes.permute(0, 3, 1, 2), upsample, self._ops)
                data, boxes = tiled_pyramid_batch(planes, cfg.mean_rgb, cfg.padding, cfg.outer_padding, self._ops)
                if not self._detector.runnable(data.shape[2:], boxes):
                    continue
                for row, cells in enumerate(self._cells_over_threshold(data)):
                    dets = self._detector.decode_candidates(*cells, boxes, upsample)
                    found[chunk[row]] = [Detection(dlib_rect_to_box(*d[:4]), float(d[4])) for d in dets]
        return found

    def _cells_over_threshold(self, data: torch.Tensor) -> list[tuple[list[int], list[int], list[float]]]:
        """Per image of the batch, (rows, cols, scores) of its score map's cells over 0, row-major
        as ``np.nonzero`` gives them: found on the device, one small copy back for the batch."""
        scores = self._scores(data)[:, 0]
        where = (scores > 0.0).nonzero()  # (image, row, col), in row-major order
        values = scores[where[:, 0], where[:, 1], where[:, 2]].cpu().tolist()
        where_host = where.cpu().tolist()
        out: list[tuple[list[int], list[int], list[float]]] = [([], [], []) for _ in range(len(scores))]
        for (image, row, col), value in zip(where_host, values, strict=True):
            out[image][0].append(row)
            out[image][1].append(col)
            out[image][2].append(value)
        return out


class TorchJpegDecoder:
    """JPEG → RGB on the GPU (nvJPEG, through torchvision), a batch per call. The pixels stay
    there: H×W×3 uint8 tensors (views of the decoder's planes) that the detectors, the landmark
    session and the chips read in place."""

    def __init__(self, device: str) -> None:
        from torchvision.io import ImageReadMode, decode_jpeg

        self.device = torch.device(device)
        self._decode = decode_jpeg
        self._mode = ImageReadMode.RGB

    def decode_many(self, blobs: Sequence[bytes]) -> list[torch.Tensor]:
        """Raises RuntimeError when any file of the batch cannot be decoded."""
        if not blobs:
            return []
        data = [torch.frombuffer(bytearray(blob), dtype=torch.uint8) for blob in blobs]
        planes = self._decode(data, device=self.device, mode=self._mode)
        return [plane.permute(1, 2, 0) for plane in planes]


def _checked_frame(image: RGBImage | torch.Tensor, upsample: int) -> torch.Tensor:
    """``checked_image`` for the torch detector: a tensor is checked and kept where it is; an
    array is checked (gray becomes r = g = b) and wrapped, to be uploaded once."""
    if not isinstance(image, torch.Tensor):
        return torch.from_numpy(checked_image(image, upsample))
    if image.ndim == 2:
        image = image.unsqueeze(2).expand(-1, -1, 3)
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H×W×3 uint8 RGB (or H×W gray) image, got {image.dtype} {tuple(image.shape)}")
    if upsample < 0:
        raise ValueError("upsample must be ≥ 0")
    return image


class TorchExactSearch:
    """Exact L2 search as one matrix product on the device: ‖q‖² − 2·q·xᵀ + ‖x‖², then top-k.

    Rows are numbered in the order they are added and keep their number: ``add`` writes new rows
    in place into a tensor of doubling capacity (no copy of the others but at a doubling), and
    ``remove`` masks rows (an infinite norm) rather than shifting every row after them. Queries go
    in chunks so the distance matrix stays within ``chunk × rows`` floats."""

    def __init__(self, vectors: np.ndarray, device: str, chunk: int = 256) -> None:
        self.device = torch.device(device)
        host = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
        count = len(host)
        # Room for writes, so the first one after a build does not copy every row (512 MB at 1M).
        self._x = torch.zeros((count + count // 8 + 64, host.shape[1]), dtype=torch.float32, device=self.device)
        self._x[:count] = host
        self._norms = torch.full((len(self._x),), float("inf"), device=self.device)
        self._norms[:count] = (self._x[:count] * self._x[:count]).sum(dim=1)
        self._size = count  # rows in use, removed ones included
        self._live = count
        self._chunk = chunk

    def __len__(self) -> int:
        return self._live

    @torch.inference_mode()
    def add(self, vectors: np.ndarray) -> None:
        """Append rows, numbered on from the last one."""
        rows = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)).to(self.device)
        start, stop = self._size, self._size + len(rows)
        if stop > len(self._x):
            capacity = max(stop, 2 * len(self._x), 1024)
            x = self._x.new_zeros((capacity, self._x.shape[1]))
            norms = self._norms.new_full((capacity,), float("inf"))
            x[:start], norms[:start] = self._x[:start], self._norms[:start]
            self._x, self._norms = x, norms
        self._x[start:stop] = rows
        self._norms[start:stop] = (rows * rows).sum(dim=1)
        self._size, self._live = stop, self._live + len(rows)

    @torch.inference_mode()
    def remove(self, rows: np.ndarray) -> None:
        """Rows never returned again; absent or removed ones are ignored."""
        index = torch.from_numpy(np.unique(np.asarray(rows, dtype=np.int64))).to(self.device)
        index = index[(index >= 0) & (index < self._size)]
        index = index[torch.isfinite(self._norms[index])]
        self._norms[index] = float("inf")
        self._x[index] = 0.0  # q·x stays finite: the distance is +inf, never NaN
        self._live -= len(index)

    @torch.inference_mode()
    def get(self, rows: np.ndarray) -> np.ndarray:
        index = torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(self.device)
        out: np.ndarray = self._x[index].cpu().numpy()
        return out

    @torch.inference_mode()
    def search(self, queries: np.ndarray, k: int, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(squared distances, row numbers; -1 past the live rows), nearest first; only ``rows`` when given."""
        x, norms = self._x[: self._size], self._norms[: self._size]
        allowed = None
        if rows is not None:
            allowed = torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(self.device)
            x, norms = x[allowed], norms[allowed]
        k = min(k, len(x))
        out_d, out_i = [], []
        for start in range(0, len(queries), self._chunk):
            q = torch.from_numpy(np.ascontiguousarray(queries[start : start + self._chunk])).to(self.device)
            d = (q * q).sum(dim=1, keepdim=True) - 2.0 * (q @ x.T) + norms
            values, index = torch.topk(d, k, dim=1, largest=False)
            if allowed is not None:
                index = allowed[index]
            index[torch.isinf(values)] = -1
            out_d.append(values.clamp_min(0).cpu().numpy())
            out_i.append(index.cpu().numpy())
        return np.concatenate(out_d), np.concatenate(out_i).astype(np.int64)
