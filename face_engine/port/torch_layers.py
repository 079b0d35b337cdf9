"""Torch building blocks shared by the ported networks, with dlib's exact semantics.

Each helper exists because dlib's layer differs from the obvious torch layer in a way that
changes the numbers (padding defaults, zero-padded residual sums, batch norm frozen as affine).
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class ConvSpec:
    """Hyper-parameters of one dlib convolution, as stored in its record (never torch defaults:
    dlib pads k/2 at stride 1 but nothing at stride 2)."""

    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    padding: int
    bias: bool = True

    def build(self) -> nn.Conv2d:
        return nn.Conv2d(
            self.in_channels,
            self.out_channels,
            self.kernel,
            stride=self.stride,
            padding=self.padding,
            bias=self.bias,
        )

    @classmethod
    def from_record(cls, rec: LayerRecord) -> ConvSpec:
        f = rec.fields
        out_c, in_c, kh, kw = rec.arrays["weight"].shape
        if kh != kw or f["stride"][0] != f["stride"][1] or f["padding"][0] != f["padding"][1]:
            raise DatFormatError(f"{rec.tag} at byte {rec.offset}: only square convolutions are supported")
        return cls(in_c, out_c, kh, f["stride"][0], f["padding"][0], "bias" in rec.arrays)


def conv_state(prefix: str, rec: LayerRecord) -> dict[str, torch.Tensor]:
    """State-dict entries of a Conv2d from a ``con`` record (weights are already F×C×kh×kw)."""
    state = {f"{prefix}.weight": torch.from_numpy(rec.arrays["weight"].copy())}
    if "bias" in rec.arrays:
        state[f"{prefix}.bias"] = torch.from_numpy(rec.arrays["bias"].copy())
    return state


class Affine(nn.Module):
    """dlib's per-channel ``y = gamma·x + beta``; buffers, not parameters, as dlib does not train it."""

    gamma: torch.Tensor
    beta: torch.Tensor

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("gamma", torch.ones(1, channels, 1, 1))
        self.register_buffer("beta", torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma + self.beta  # multiply, round, add: dlib uses no fused multiply-add


def affine_state(prefix: str, rec: LayerRecord) -> dict[str, torch.Tensor]:
    """State-dict entries of an :class:`Affine` from an ``affine_`` or ``bn_con2`` record."""
    if rec.kind == "affine":
        gamma, beta = rec.arrays["gamma"], rec.arrays["beta"]
    elif rec.kind == "bn_con":
        gamma, beta = bn_as_affine(rec)
    else:
        raise DatFormatError(f"record {rec.tag!r} is not an affine or batch-norm layer")
    return {
        f"{prefix}.gamma": torch.from_numpy(gamma.copy()).view(1, -1, 1, 1),
        f"{prefix}.beta": torch.from_numpy(beta.copy()).view(1, -1, 1, 1),
    }


def bn_as_affine(rec: LayerRecord) -> tuple[np.ndarray, np.ndarray]:
    """Freeze batch norm into gamma/beta the way dlib's affine_(bn_) constructor does: in float32,
    with eps cast to float before the sum, rather than torch's BatchNorm arithmetic."""
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


@torch.no_grad()
def fold_affines(model: nn.Module) -> nn.Module:
    """Fold every :class:`Affine` into the convolution just before it (w·γ, b·γ + β) and drop
    it, saving one pass over each activation. For speed on the GPU: it rounds differently from
    dlib's separate multiply and add (by ~1e-7 relative), so the exact paths keep the layers."""
    for parent in list(model.modules()):
        children = list(parent.named_children())
        for (_, conv), (name, affine) in zip(children, children[1:], strict=False):
            if isinstance(conv, nn.Conv2d) and isinstance(affine, Affine):
                gamma, beta = affine.gamma.view(-1), affine.beta.view(-1)
                bias = conv.bias if conv.bias is not None else torch.zeros_like(gamma)
                conv.weight.mul_(gamma.view(-1, 1, 1, 1))
                conv.bias = nn.Parameter(bias * gamma + beta, requires_grad=False)
                setattr(parent, name, nn.Identity())
    return model


@torch.no_grad()
def pad_channels(body: nn.Sequential, multiple: int = 8) -> nn.Sequential:
    """After :func:`fold_affines`: give every convolution of a plain conv stack a channel count that is a multiple of
    ``multiple`` (tensor cores want that): the added filters are zeros, so are their outputs
    after relu, and the next convolution gets zero weights for them. The result is unchanged."""
    convs = [m for m in body if isinstance(m, nn.Conv2d)]
    for conv, following in zip(convs, convs[1:], strict=False):
        extra = -conv.out_channels % multiple
        if not extra:
            continue
        conv.weight = nn.Parameter(F.pad(conv.weight, (0, 0, 0, 0, 0, 0, 0, extra)), requires_grad=False)
        if conv.bias is not None:
            conv.bias = nn.Parameter(F.pad(conv.bias, (0, extra)), requires_grad=False)
        conv.out_channels += extra
        following.weight = nn.Parameter(F.pad(following.weight, (0, 0, 0, 0, 0, extra)), requires_grad=False)
        following.in_channels += extra
    return body
