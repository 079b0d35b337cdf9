"""The detector's resize (torch's uint8 antialiased bilinear kernel) against Pillow's BILINEAR resize,
which it replaced (3× faster): enlarging and shrinking real photos, every value within 1 of Pillow's
and at most 0.25 % of them off by that 1 (fixed-point rounding; measured worst 0.14 %)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from face_engine.models.detector import resize

PHOTOS = ("misc/obama-720p.jpg", "misc/obama-1080p.jpg", "people/test/obama_and_biden.jpg",
          "misc/two_people.jpg", "misc/obama-240p.jpg")
# 720p to 2048 (1.6), 1080p to 2048 (2048/1920), an odd enlargement, the halving and odd
# shrinkings of large photos (antialiased: the filter widens with the factor), and a tiny result.
FACTORS = (1.6, 2048 / 1920, 1.37, 0.5, 0.377, 0.1234, 0.013)


def resize_pillow(image: np.ndarray, factor: float) -> np.ndarray:
    """What ``resize`` replaced: Pillow's BILINEAR resize, the reference it is held to."""
    height, width = image.shape[:2]
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))


def _photo(data_dir, name: str) -> np.ndarray:
    return np.asarray(Image.open(data_dir / name).convert("RGB"))


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("factor", FACTORS)
def test_resize_equals_pillow(data_dir, name: str, factor: float) -> None:
    image = _photo(data_dir, name)
    ours, pillow = resize(image, factor), resize_pillow(image, factor)
    assert ours.shape == pillow.shape and ours.dtype == np.uint8
    assert ours.flags.c_contiguous
    diff = np.abs(ours.astype(np.int16) - pillow.astype(np.int16))
    assert diff.max() <= 1
    assert np.count_nonzero(diff) <= 0.0025 * diff.size, f"{np.count_nonzero(diff)} of {diff.size} values differ"
    print(f"{name} ×{factor:.4f}: {np.count_nonzero(diff) / diff.size:.4%} of the values off by 1")


def test_resize_takes_read_only_and_strided_arrays_and_leaves_them_alone(data_dir) -> None:
    image = _photo(data_dir, "misc/obama-480p.jpg")
    assert not image.flags.writeable  # as decoded
    before = image.copy()
    crop = image[7:301, 13:417]  # a view that is not contiguous
    diff = resize(crop, 1.6).astype(np.int16) - resize_pillow(np.ascontiguousarray(crop), 1.6)
    assert np.abs(diff).max() <= 1
    assert np.array_equal(image, before)


def test_factor_one_returns_the_image_itself(data_dir) -> None:
    image = _photo(data_dir, "misc/obama-240p.jpg")
    assert resize(image, 1.0 + 1e-9) is image


@pytest.mark.parametrize("name", PHOTOS[:3])
@pytest.mark.parametrize("factor", (1.6, 0.5, 0.1234))
def test_the_gpu_float_path_stays_within_one_of_pillow(data_dir, name: str, factor: float) -> None:
    """A frame on a GPU is resized in float32 (torch's antialiased kernel takes no uint8 there):
    run here on the CPU, with the frame as a tensor of the same layout as nvJPEG's output."""
    import torch

    from face_engine.models.detector import resize_planes_float

    image = _photo(data_dir, name)
    pillow = resize_pillow(image, factor)
    planes = torch.from_numpy(np.array(image)).permute(2, 0, 1).unsqueeze(0)
    ours = resize_planes_float(planes, pillow.shape[:2])[0].permute(1, 2, 0).numpy()
    diff = np.abs(ours.astype(np.int16) - pillow.astype(np.int16))
    assert diff.max() <= 1
    assert np.count_nonzero(diff) <= 0.0025 * diff.size
    print(f"{name} ×{factor}: {np.count_nonzero(diff) / diff.size:.3%} of the values off by 1 (float path)")
