"""Convert dlib's networks once, cache the result, and load it back safely.

The cache lives in ``<data_dir>/dlib-port/<weights stem>-<sha256 of the .dat>/``:

* ``spec.json`` – the module skeleton (layer hyper-parameters, detector settings) and provenance;
* ``state.pt``  – a plain ``{name: tensor}`` dict written by ``torch.save`` and read back with
  ``torch.load(weights_only=True)``, so loading never unpickles arbitrary objects;
* ``model.onnx`` – the same network for ONNX Runtime (dynamic batch for the ResNet, dynamic
  batch × H × W for the detector network).

Keying by the weight file's hash means an updated ``.dat`` is converted afresh instead of being
served stale weights. Nothing is ever downloaded: the ``.dat`` files come from the installed
``face_recognition_models`` package. ``torch`` and ``onnxruntime`` are optional runtimes, so they
are imported here and in the other port modules only, never from ``face_engine/__init__.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from face_engine.weights import MMOD_DETECTOR, RESNET, weight_path

if TYPE_CHECKING:  # the runtimes stay optional: imported lazily inside the functions
    from face_engine.port.detector import Detector, DetectorConfig
    from face_engine.port.mmod import MMODNet
    from face_engine.port.resnet import FaceResNet

DATA_DIR_ENV = "FACE_ENGINE_DATA_DIR"
CACHE_SUBDIR = "dlib-port"
# Bump when the conversion itself changes, so caches written by older code are not reused.
FORMAT_VERSION = 1
ONNX_OPSET = 17

SPEC_FILE, STATE_FILE, ONNX_FILE = "spec.json", "state.pt", "model.onnx"


def data_root(data_dir: str | Path | None = None) -> Path:
    """The data directory: the argument, else ``$FACE_ENGINE_DATA_DIR``, else ``~/.cache/facerec``."""
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else Path.home() / ".cache" / "facerec"


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) so loads do not rehash 22 MB."""
    st = path.stat()
    return _sha256(str(path.resolve()), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_dir(weights: Path, data_dir: str | Path | None = None) -> Path:
    """Where the conversion of this exact weight file lives (keyed by its sha256)."""
    return data_root(data_dir) / CACHE_SUBDIR / f"{weights.stem}-{file_sha256(weights)}"


# --- conversion -------------------------------------------------------------------------------


def _export_onnx(
    model: Any, example: Any, path: Path, names: tuple[str, str], dynamic: dict[str, dict[int, str]]
) -> None:
    import torch

    with warnings.catch_warnings():
        # The legacy TorchScript exporter is deprecated in favour of the dynamo one, which needs
        # the extra `onnxscript` package; the tracer warns about shape-dependent Python branches,
        # which are static here (add_prev's padding depends only on the fixed chip size).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[names[0]],
            output_names=[names[1]],
            dynamic_axes=dynamic,
            opset_version=ONNX_OPSET,
            dynamo=False,
        )


def _convert_resnet(weights: Path, out: Path) -> dict[str, Any]:
    import torch

    from face_engine.port.dat_format import parse_network
    from face_engine.port.resnet import CHIP_SIZE, read_resnet, resnet_from_state

    spec, state = read_resnet(parse_network(weights))
    model = resnet_from_state(spec, state)
    torch.save(state, out / STATE_FILE)
    example = torch.zeros(2, CHIP_SIZE, CHIP_SIZE, 3, dtype=torch.uint8)
    axes = {"chips": {0: "batch"}, "descriptors": {0: "batch"}}
    _export_onnx(model, example, out / ONNX_FILE, ("chips", "descriptors"), axes)
    return {"spec": spec.to_json()}


def _convert_detector(weights: Path, out: Path) -> dict[str, Any]:
    import torch

    from face_engine.port.dat_format import parse_network
    from face_engine.port.detector import DetectorConfig
    from face_engine.port.mmod import mmod_net_from_state, read_mmod_net

    net = parse_network(weights)
    convs, state = read_mmod_net(net)
    model = mmod_net_from_state(convs, state)
    torch.save(state, out / STATE_FILE)
    example = torch.zeros(1, 3, 120, 96)
    axes = {"pyramid": {0: "batch", 2: "height", 3: "width"}, "scores": {0: "batch", 2: "rows", 3: "cols"}}
    _export_onnx(model, example, out / ONNX_FILE, ("pyramid", "scores"), axes)
    return {"convs": [asdict(c) for c in convs], "config": DetectorConfig.from_network(net).to_json()}


_CONVERTERS: dict[str, Callable[[Path, Path], dict[str, Any]]] = {
    RESNET: _convert_resnet,
    MMOD_DETECTOR: _convert_detector,
}


def _read_spec(folder: Path) -> dict[str, Any] | None:
    try:
        spec = json.loads((folder / SPEC_FILE).read_text())
    except (OSError, ValueError):
        return None
    complete = all((folder / f).is_file() for f in (STATE_FILE, ONNX_FILE))
    return spec if complete and spec.get("format_version") == FORMAT_VERSION else None


def ensure_converted(name: str, data_dir: str | Path | None = None) -> tuple[Path, dict[str, Any]]:
    """Convert ``name`` (RESNET or MMOD_DETECTOR) unless its cache exists; return (folder, spec).

    The conversion is written to a temporary sibling folder and renamed into place, so a crash
    or a concurrent process never leaves a half-written cache that looks complete.
    """
    weights = weight_path(name)
    folder = cache_dir(weights, data_dir)
    spec = _read_spec(folder)
    if spec is not None:
        return folder, spec
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        spec = _CONVERTERS[name](weights, tmp)
        spec |= {
            "format_version": FORMAT_VERSION,
            "source": name,
            "sha256": folder.name.rsplit("-", 1)[1],
            "onnx_opset": ONNX_OPSET,
        }
        (tmp / SPEC_FILE).write_text(json.dumps(spec, indent=1))
        if folder.exists():
            done = _read_spec(folder)
            if done is not None:  # a concurrent process finished first: use its copy
                return folder, done
            shutil.rmtree(folder, ignore_errors=True)  # stale or incomplete
        try:
            tmp.rename(folder)
        except OSError:
            done = _read_spec(folder)  # lost a rename race: fine if the winner's copy is good
            if done is None:
                raise
            return folder, done
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder, spec


def _load_state(folder: Path) -> dict[str, Any]:
    import torch

    state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{folder / STATE_FILE} is not a plain dict of tensors")
    return state


# --- public API --------------------------------------------------------------------------------


def load_resnet(data_dir: str | Path | None = None) -> FaceResNet:
    """The recognition network as a torch module (eval mode), converted on first use."""
    from face_engine.port.resnet import ResNetSpec, resnet_from_state

    folder, spec = ensure_converted(RESNET, data_dir)
    return resnet_from_state(ResNetSpec.from_json(spec["spec"]), _load_state(folder))


def resnet_onnx_path(data_dir: str | Path | None = None) -> Path:
    """ONNX model: input ``chips`` uint8 N×150×150×3 RGB → ``descriptors`` float32 N×128."""
    return ensure_converted(RESNET, data_dir)[0] / ONNX_FILE


def load_detector_net(data_dir: str | Path | None = None) -> MMODNet:
    """The detector's network alone (torch, eval mode)."""
    from face_engine.port.mmod import mmod_net_from_state
    from face_engine.port.torch_layers import ConvSpec

    folder, spec = ensure_converted(MMOD_DETECTOR, data_dir)
    return mmod_net_from_state([ConvSpec(**c) for c in spec["convs"]], _load_state(folder))


def load_detector(data_dir: str | Path | None = None, *, backend: str = "torch") -> Detector:
    """The whole detector (``.detect(image, upsample)``), its network run by torch or ONNX Runtime.

    With ``backend="onnx"`` torch is not imported (the conversion itself still needs it once).
    """
    from face_engine.port.detector import Detector, DetectorConfig

    folder, spec = ensure_converted(MMOD_DETECTOR, data_dir)
    if backend == "onnx":
        runner = onnx_runner(folder / ONNX_FILE)
    elif backend == "torch":
        from face_engine.port.mmod import torch_runner

        runner = torch_runner(load_detector_net(data_dir))
    else:
        raise ValueError(f"unknown backend {backend!r}; use 'torch' or 'onnx'")
    return Detector(runner, DetectorConfig.from_json(spec["config"]))


def detector_config(data_dir: str | Path | None = None) -> DetectorConfig:
    """Pyramid and decoding parameters of the detector, to wrap around any network runner."""
    from face_engine.port.detector import DetectorConfig

    return DetectorConfig.from_json(ensure_converted(MMOD_DETECTOR, data_dir)[1]["config"])


def detector_onnx_path(data_dir: str | Path | None = None) -> Path:
    """ONNX model: input ``pyramid`` float32 N×3×H×W (normalised tiled pyramid) → ``scores``."""
    return ensure_converted(MMOD_DETECTOR, data_dir)[0] / ONNX_FILE


def onnx_runner(path: Path, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A CPU ONNX Runtime session wrapped as ``f(input array) -> first output array``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def run(batch: np.ndarray) -> np.ndarray:
        out: np.ndarray = session.run(None, {input_name: batch})[0]
        return out

    return run


class OnnxResNet:
    """The recognition network on ONNX Runtime, with the same ``embed`` API as the torch module."""

    def __init__(self, data_dir: str | Path | None = None, threads: int | None = None) -> None:
        self.path = resnet_onnx_path(data_dir)
        self._run = onnx_runner(self.path, threads)

    def embed(self, chips: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Descriptors for uint8 chips (N×150×150×3 → N×128, or one chip → 128)."""
        from face_engine.port.chip import check_chips

        arr = check_chips(chips)
        outs = [self._run(np.ascontiguousarray(arr[i : i + batch_size])) for i in range(0, len(arr), batch_size)]
        out = np.concatenate(outs) if outs else np.zeros((0, 128), np.float32)
        return out[0] if np.ndim(chips) == 3 else out
