"""dlib's face recognition ResNet (``dlib_face_recognition_resnet_model_v1``) as a torch module.

The architecture is dlib's C++ type ``anet_type`` (dnn_face_recognition_ex.cpp). The ``.dat``
file stores no wiring, so :func:`read_resnet` walks its records against that architecture
(failing loudly on any mismatch) and yields a small JSON-able :class:`ResNetSpec` plus a torch
state dict; :class:`FaceResNet` is built from the spec alone, which is what lets a converted
model load from the cache without reparsing the ``.dat``.

API: ``forward(chips)`` takes N×150×150×3 **uint8 RGB** chips (the layout of numpy images and of
``dlib.get_face_chip``) and returns N×128 float32 descriptors. The normalisation
``(pixel − channel mean) / 256`` happens inside, so the ONNX graph has the same contract.

On CUDA, torch allows TF32 convolutions by default; that moves descriptors by up to ~1e-3 (L2),
so set ``torch.backends.cudnn.allow_tf32 = False`` where dlib-identical output matters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from face_engine.port.chip import CHIP_SIZE, check_chips
from face_engine.port.dat_format import DatFormatError, NetworkFile, parse_network
from face_engine.port.torch_layers import (
    Affine,
    ConvSpec,
    RecordCursor,
    add_zero_padded,
    affine_state,
    conv_state,
)

__all__ = ["CHIP_SIZE", "DESCRIPTOR_SIZE", "FaceResNet", "ResNetSpec", "build_resnet", "read_resnet"]

DESCRIPTOR_SIZE = 128


@dataclass(frozen=True)
class ResNetSpec:
    """Everything needed to rebuild the module skeleton; weights live in the state dict."""

    mean_rgb: tuple[float, float, float]
    stem: ConvSpec
    pool: tuple[int, int, int]  # max pool kernel, stride, padding
    blocks: tuple[tuple[ConvSpec, ConvSpec], ...]
    fc: tuple[int, int, bool]  # inputs, outputs, bias

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ResNetSpec:
        return cls(
            mean_rgb=tuple(d["mean_rgb"]),
            stem=ConvSpec(**d["stem"]),
            pool=tuple(d["pool"]),
            blocks=tuple((ConvSpec(**a), ConvSpec(**b)) for a, b in d["blocks"]),
            fc=tuple(d["fc"]),
        )


class ResidualBlock(nn.Module):
    """``relu(add_prev(affine(conv(relu(affine(conv_s(x))))), skip))``.

    A downsampling block (stride-2 first conv) takes its skip from a 2×2/2 average pool of x
    and has no projection: the skip's missing channels and rows are zeros (see add_prev).
    """

    def __init__(self, conv1: ConvSpec, conv2: ConvSpec) -> None:
        super().__init__()
        self.conv1, self.aff1 = conv1.build(), Affine(conv1.out_channels)
        self.conv2, self.aff2 = conv2.build(), Affine(conv2.out_channels)
        self.downsample = conv1.stride != 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.aff2(self.conv2(F.relu(self.aff1(self.conv1(x)))))
        skip = F.avg_pool2d(x, 2, 2) if self.downsample else x
        return F.relu(add_zero_padded(y, skip))


class FaceResNet(nn.Module):
    """The 29-conv ResNet mapping a 150×150 face chip to a 128-d descriptor."""

    mean: torch.Tensor

    def __init__(self, spec: ResNetSpec) -> None:
        super().__init__()
        self.spec = spec
        self.register_buffer("mean", torch.tensor(spec.mean_rgb, dtype=torch.float32).view(1, 3, 1, 1))
        self.stem_conv, self.stem_aff = spec.stem.build(), Affine(spec.stem.out_channels)
        self.stem_pool = nn.MaxPool2d(*spec.pool)
        self.blocks = nn.Sequential(*(ResidualBlock(a, b) for a, b in spec.blocks))
        self.fc = nn.Linear(spec.fc[0], spec.fc[1], bias=spec.fc[2])

    def normalise(self, chips: torch.Tensor) -> torch.Tensor:
        """uint8 N×H×W×3 → float N×3×H×W, ``(pixel − mean) / 256`` as dlib's input layer does."""
        x = chips.permute(0, 3, 1, 2).to(self.mean.dtype)
        return (x - self.mean) / 256.0

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        x = self.normalise(chips)
        x = self.stem_pool(F.relu(self.stem_aff(self.stem_conv(x))))
        x = self.blocks(x)
        out: torch.Tensor = self.fc(x.mean(dim=(2, 3)))  # dlib's avg_pool_everything
        return out

    @torch.inference_mode()
    def embed(self, chips: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Descriptors for a stack of uint8 chips (N×150×150×3 → N×128, or one chip → 128)."""
        arr = check_chips(chips)
        outs = [
            self(torch.from_numpy(np.ascontiguousarray(arr[i : i + batch_size]))).numpy()
            for i in range(0, len(arr), batch_size)
        ]
        out = np.concatenate(outs) if outs else np.zeros((0, DESCRIPTOR_SIZE), np.float32)
        return out[0] if np.ndim(chips) == 3 else out


def read_resnet(net: NetworkFile) -> tuple[ResNetSpec, dict[str, torch.Tensor]]:
    """Check the records against dlib's ``anet_type`` and turn them into a spec + state dict."""
    if net.input.tag != "input_rgb_image_sized" or net.input.fields["size"] != (CHIP_SIZE, CHIP_SIZE):
        raise DatFormatError(f"not the 150×150 recognition network: input is {net.input.tag}")
    cur = RecordCursor(net)
    mean = torch.tensor(net.input.fields["mean_rgb"], dtype=torch.float32).view(1, 3, 1, 1)
    state: dict[str, torch.Tensor] = {"mean": mean}
    stem = cur.take("con")
    state |= conv_state("stem_conv", stem) | affine_state("stem_aff", cur.take("affine"))
    cur.take("relu")
    pool = cur.take("max_pool").fields
    if len({*pool["kernel"]}) != 1 or len({*pool["stride"]}) != 1 or len({*pool["padding"]}) != 1:
        raise DatFormatError(f"unexpected max pool {pool}")

    blocks: list[tuple[ConvSpec, ConvSpec]] = []
    while (layer := cur.peek()) is not None and layer.kind == "con":
        p = f"blocks.{len(blocks)}"
        c1 = cur.take("con")
        state |= conv_state(f"{p}.conv1", c1) | affine_state(f"{p}.aff1", cur.take("affine"))
        cur.take("relu")
        c2 = cur.take("con")
        state |= conv_state(f"{p}.conv2", c2) | affine_state(f"{p}.aff2", cur.take("affine"))
        spec1, spec2 = ConvSpec.from_record(c1), ConvSpec.from_record(c2)
        if spec1.stride != 1:
            skip = cur.take("avg_pool").fields
            if skip["kernel"] != (2, 2) or skip["stride"] != (2, 2) or skip["padding"] != (0, 0):
                raise DatFormatError(f"unexpected skip pooling {skip}")
        cur.take("add_prev")
        cur.take("relu")
        blocks.append((spec1, spec2))

    if cur.take("avg_pool").fields["kernel"] != (0, 0):
        raise DatFormatError("expected dlib's avg_pool_everything before the fc layer")
    fc = cur.take("fc")
    cur.finish()
    # dlib multiplies x·W with W stored inputs × outputs; torch's Linear wants outputs × inputs.
    state["fc.weight"] = torch.from_numpy(fc.arrays["weight"].T.copy())
    if "bias" in fc.arrays:
        state["fc.bias"] = torch.from_numpy(fc.arrays["bias"].copy())
    spec = ResNetSpec(
        mean_rgb=tuple(net.input.fields["mean_rgb"]),
        stem=ConvSpec.from_record(stem),
        pool=(pool["kernel"][0], pool["stride"][0], pool["padding"][0]),
        blocks=tuple(blocks),
        fc=(fc.fields["num_inputs"], fc.fields["num_outputs"], "bias" in fc.arrays),
    )
    return spec, state


def resnet_from_state(spec: ResNetSpec, state: dict[str, torch.Tensor]) -> FaceResNet:
    model = FaceResNet(spec)
    model.load_state_dict(state, strict=True)
    return model.eval()


def build_resnet(weights: str | Path | NetworkFile) -> FaceResNet:
    """Parse (if given a path) and build the recognition network in eval mode."""
    net = weights if isinstance(weights, NetworkFile) else parse_network(weights)
    return resnet_from_state(*read_resnet(net))
