"""dlib's face recognition ResNet (``dlib_face_recognition_resnet_model_v1``) as a torch module.

The architecture is dlib's C++ type ``anet_type`` (dnn_face_recognition_ex.cpp); the weights and
every layer hyper-parameter come from the parsed ``.dat`` file, and the record sequence is
checked against the architecture so a different file fails loudly instead of loading wrongly.

API: ``forward(chips)`` takes N×150×150×3 **uint8 RGB** chips (the layout of numpy images and of
``dlib.get_face_chip``) and returns N×128 float32 descriptors. The normalisation
``(pixel − channel mean) / 256`` happens inside, so the ONNX graph has the same contract.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from face_engine.port.dat_format import DatFormatError, NetworkFile, parse_network
from face_engine.port.torch_layers import (
    Affine,
    RecordCursor,
    add_zero_padded,
    conv_from_record,
)

CHIP_SIZE = 150
DESCRIPTOR_SIZE = 128


class ResidualBlock(nn.Module):
    """``relu(add_prev(affine(conv(relu(affine(conv_s(x))))), skip))``.

    A downsampling block (stride-2 first conv) takes its skip from a 2×2/2 average pool of x
    and has no projection: the skip's missing channels and rows are zeros (see add_prev).
    """

    def __init__(self, cursor: RecordCursor) -> None:
        super().__init__()
        self.conv1 = conv_from_record(cursor.take("con"))
        self.aff1 = Affine.from_record(cursor.take("affine"))
        cursor.take("relu")
        self.conv2 = conv_from_record(cursor.take("con"))
        self.aff2 = Affine.from_record(cursor.take("affine"))
        self.downsample = self.conv1.stride != (1, 1)
        if self.downsample:
            pool = cursor.take("avg_pool")
            if pool.fields["kernel"] != (2, 2) or pool.fields["stride"] != (2, 2):
                raise DatFormatError(f"unexpected skip pooling {pool.fields}")
        cursor.take("add_prev")
        cursor.take("relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.aff2(self.conv2(F.relu(self.aff1(self.conv1(x)))))
        skip = F.avg_pool2d(x, 2, 2) if self.downsample else x
        return F.relu(add_zero_padded(y, skip))


class FaceResNet(nn.Module):
    """The 29-conv ResNet mapping a 150×150 face chip to a 128-d descriptor."""

    mean: torch.Tensor

    def __init__(self, net: NetworkFile) -> None:
        super().__init__()
        if net.input.tag != "input_rgb_image_sized" or net.input.fields["size"] != (150, 150):
            raise DatFormatError(f"not the 150×150 recognition network: input {net.input.tag}")
        mean = np.asarray(net.input.fields["mean_rgb"], dtype=np.float32)
        self.register_buffer("mean", torch.from_numpy(mean).view(1, 3, 1, 1))

        cursor = RecordCursor(net)
        self.stem_conv = conv_from_record(cursor.take("con"))
        self.stem_aff = Affine.from_record(cursor.take("affine"))
        cursor.take("relu")
        pool = cursor.take("max_pool")
        self.stem_pool = nn.MaxPool2d(pool.fields["kernel"], pool.fields["stride"], pool.fields["padding"])

        blocks = []
        while (layer := cursor.peek()) is not None and layer.kind == "con":
            blocks.append(ResidualBlock(cursor))
        self.blocks = nn.Sequential(*blocks)

        if cursor.take("avg_pool").fields["kernel"] != (0, 0):
            raise DatFormatError("expected dlib's avg_pool_everything before the fc layer")
        fc = cursor.take("fc")
        cursor.finish()
        self.fc = nn.Linear(fc.fields["num_inputs"], fc.fields["num_outputs"], bias="bias" in fc.arrays)
        with torch.no_grad():
            self.fc.weight.copy_(torch.from_numpy(fc.arrays["weight"].T.copy()))
            if self.fc.bias is not None:
                self.fc.bias.copy_(torch.from_numpy(fc.arrays["bias"]))

    def normalise(self, chips: torch.Tensor) -> torch.Tensor:
        """uint8 N×H×W×3 → float N×3×H×W, ``(pixel − mean) / 256`` as dlib's input layer does."""
        x = chips.permute(0, 3, 1, 2).to(self.mean.dtype)
        return (x - self.mean) / 256.0

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        x = self.normalise(chips)
        x = self.stem_pool(F.relu(self.stem_aff(self.stem_conv(x))))
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))

    @torch.inference_mode()
    def embed(self, chips: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Descriptors for a stack of uint8 chips (N×150×150×3 or a single 150×150×3)."""
        arr = np.asarray(chips)
        single = arr.ndim == 3
        if single:
            arr = arr[None]
        if arr.dtype != np.uint8 or arr.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ValueError(f"expected uint8 N×150×150×3 chips, got {arr.dtype} {arr.shape}")
        outs = [
            self(torch.from_numpy(np.ascontiguousarray(arr[i : i + batch_size])))
            for i in range(0, len(arr), batch_size)
        ]
        out = torch.cat(outs).numpy() if outs else np.zeros((0, DESCRIPTOR_SIZE), np.float32)
        return out[0] if single else out


def build_resnet(weights: str | Path | NetworkFile) -> FaceResNet:
    """Parse (if given a path) and build the recognition network in eval mode."""
    net = weights if isinstance(weights, NetworkFile) else parse_network(weights)
    return FaceResNet(net).eval()
