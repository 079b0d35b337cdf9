"""Torch building blocks shared by the ported networks, with dlib's exact semantics.

Each helper exists because dlib's layer differs from the obvious torch layer in a way that
changes the numbers (padding defaults, zero-padded residual sums, batch norm frozen as affine).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from face_engine.port.dat_format import DatFormatError, LayerRecord, NetworkFile


class RecordCursor:
    """Walks a network's layer records in order, checking each is the kind the architecture expects.

    The file does not store the wiring (tag/skip layers carry no ids), so the port hard-codes
    dlib's C++ network type; this cursor makes any disagreement with the file a loud error.
    """

    def __init__(self, net: NetworkFile) -> None:
        self.layers = net.layers
        self.index = 0

    def peek(self) -> LayerRecord | None:
        return self.layers[self.index] if self.index < len(self.layers) else None

    def take(self, kind: str) -> LayerRecord:
        layer = self.peek()
        if layer is None or layer.kind != kind:
            found = "the end of the network" if layer is None else repr(layer.tag)
            raise DatFormatError(f"layer {self.index}: expected a {kind!r} record, found {found}")
        self.index += 1
        return layer

    def finish(self) -> None:
        if self.index != len(self.layers):
            raise DatFormatError(f"{len(self.layers) - self.index} unexpected trailing layers")


def conv_from_record(rec: LayerRecord) -> nn.Conv2d:
    """A Conv2d holding the record's filters; padding and stride come from the file, never
    from torch defaults (dlib pads k/2 at stride 1 but nothing at stride 2)."""
    weight = rec.arrays["weight"]
    out_c, in_c, kh, kw = weight.shape
    bias = "bias" in rec.arrays
    conv = nn.Conv2d(
        in_c, out_c, (kh, kw), stride=rec.fields["stride"], padding=rec.fields["padding"], bias=bias
    )
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(weight))
        if bias:
            conv.bias.copy_(torch.from_numpy(rec.arrays["bias"]))  # type: ignore[union-attr]
    return conv


class Affine(nn.Module):
    """dlib's per-channel ``y = gamma·x + beta``; buffers, not parameters, as dlib does not train it."""

    gamma: torch.Tensor
    beta: torch.Tensor

    def __init__(self, gamma: np.ndarray, beta: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("gamma", torch.from_numpy(np.ascontiguousarray(gamma)).view(1, -1, 1, 1))
        self.register_buffer("beta", torch.from_numpy(np.ascontiguousarray(beta)).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma + self.beta

    @classmethod
    def from_record(cls, rec: LayerRecord) -> Affine:
        if rec.kind == "affine":
            return cls(rec.arrays["gamma"], rec.arrays["beta"])
        if rec.kind == "bn_con":
            return cls(*bn_as_affine(rec))
        raise DatFormatError(f"record {rec.tag!r} is not an affine or batch-norm layer")


def bn_as_affine(rec: LayerRecord) -> tuple[np.ndarray, np.ndarray]:
    """Freeze batch norm into gamma/beta the way dlib's affine_(bn_) constructor does, in float32
    (eps is cast to float before the sum), so the folded values match dlib's bit for bit."""
    a = rec.arrays
    eps = np.float32(rec.fields["eps"])
    g = a["gamma"] / np.sqrt(a["running_variances"] + eps)
    b = a["beta"] - g * a["running_means"]
    return g.astype(np.float32), b.astype(np.float32)


def add_zero_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: a tensor smaller in channels/rows/cols is zero-padded *at the end*.

    Shapes are static for a given input size, so under ONNX export this becomes constant pads.
    """
    if a.shape[1:] == b.shape[1:]:
        return a + b
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def grow(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return grow(a) + grow(b)
