"""dlib's ``extract_fhog_features`` (Felzenszwalb's HOG, 31 planes per cell) in numpy, bit for bit.

Written from ``dlib/image_transforms/fhog.h`` (v20.0.1, the source of the ``dlib-bin`` wheel: an
AVX build without FMA, where dlib's ``simd8f`` / ``simd4f`` are 8 / 4 float32 lanes). What has to
be reproduced, and why it matters:

* **Gradients** are central differences of the 8-bit pixels; an RGB pixel takes the colour
  channel with the largest squared gradient. dlib computes columns in groups of 8 with SIMD and
  the last few columns with scalar code, and the two break ties differently: the SIMD select
  keeps the *later* channel on equal lengths, the scalar code the *earlier* one. Equal lengths
  with different directions ((3, 4) and (5, 0)) are common in 8-bit images.
* **Orientation**: the largest of 18 dot products (9 float32 unit vectors and their negatives),
  first one wins; magnitude = float32 √(squared length).
* **Cell histograms**: each pixel votes into the 4 nearest 8×8 cells with bilinear weights. The
  SIMD columns compute ``vy·(vx·v)``, the scalar ones ``(vy·vx)·v``: different float32
  roundings. The votes of a cell are added in raster order; here every step of a 16×16 sweep adds
  each cell's next vote at once (each cell gets one vote per step, so the order is dlib's).
* **Normalisation**: each cell's 18 bins against the energies of its 4 surrounding 2×2 blocks,
  truncated at 0.2, as 4 float32 lanes summed pairwise ((l0 + l1) + (l2 + l3), SSE4.1's ``dpps``),
  giving 18 signed + 9 unsigned orientation planes and 4 texture planes (the lanes themselves,
  summed over the 18 bins and scaled by 0.4714).

The result is dlib's array of 31 planes, padded for a filter of the given size: the features sit
at ((rows−1)//2, (cols−1)//2) with zeros around them.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["NUM_PLANES", "cell_counts", "extract_fhog_features", "fhog_cells", "orientation_table"]

NUM_PLANES = 31
# The unit vectors of the 9 unsigned orientations, as dlib writes them (float32 in dlib).
_DIRECTIONS = np.array(
    [[1.0, 0.0], [0.9397, 0.3420], [0.7660, 0.6428], [0.500, 0.8660], [0.1736, 0.9848],
     [-0.1736, 0.9848], [-0.5000, 0.8660], [-0.7660, 0.6428], [-0.9397, 0.3420]],
    dtype=np.float32,
)  # fmt: skip
_F32 = np.float32
_EPS = _F32(0.0001)
_TEXTURE_SCALE = _F32(2 * 0.2357)


def cell_counts(nr: int, nc: int, cell_size: int = 8) -> tuple[int, int]:
    """Cells per column and row: ``(int)((float)n / cell + 0.5)``."""
    return int(_F32(nr) / _F32(cell_size) + 0.5), int(_F32(nc) / _F32(cell_size) + 0.5)


def simd_end(visible: int) -> int:
    """First column left to dlib's scalar loop: groups of 8 start at x = 1 while x < visible − 7."""
    x = 1
    while x < visible - 7:
        x += 8
    return x


def _gradients(img: np.ndarray, vr: int, vc: int, split: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """gx, gy (int32) and squared length for pixels [1, vr) × [1, vc); RGB picks a channel."""
    i = img.astype(np.int32)
    gx = i[1:vr, 2 : vc + 1] - i[1:vr, 0 : vc - 1]
    gy = i[2 : vr + 1, 1:vc] - i[0 : vr - 1, 1:vc]
    sq = gx * gx + gy * gy
    if img.ndim == 2:
        return gx, gy, sq
    r, g, b = sq[..., 0], sq[..., 1], sq[..., 2]
    # SIMD columns: (r > g ? r : g), then (that > b ? that : b): ties go to the later channel.
    first = np.where(r > g, 0, 1)
    first_len = np.where(r > g, r, g)
    simd = np.where(first_len > b, first, 2)
    # Scalar columns: start with red, switch only on a strictly larger length.
    first = np.where(g > r, 1, 0)
    first_len = np.where(g > r, g, r)
    scalar = np.where(b > first_len, 2, first)
    ch = np.concatenate([simd[:, : split - 1], scalar[:, split - 1 :]], axis=1)

    def pick(a: np.ndarray) -> np.ndarray:
        return np.where(ch == 0, a[..., 0], np.where(ch == 1, a[..., 1], a[..., 2]))

    return pick(gx), pick(gy), pick(sq)


def _orientations(gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Index 0..17 of the best float32 dot product; the first maximum wins, 0 if none is > 0."""
    fx, fy = gx.astype(_F32), gy.astype(_F32)
    best = np.zeros(gx.shape, _F32)
    best_o = np.zeros(gx.shape, np.uint8)
    for o, (dx, dy) in enumerate(_DIRECTIONS):
        dot = fx * dx + fy * dy
        better = dot > best
        best = np.where(better, dot, best)
        best_o[better] = o
        better = -dot > best
        best = np.where(better, -dot, best)
        best_o[better] = o + 9
    return best_o


@functools.lru_cache(maxsize=1)
def orientation_table() -> np.ndarray:
    """:func:`_orientations` of every integer gradient (gx, gy) ∈ [−255, 255]², indexed
    [gy + 255, gx + 255]: 8-bit images have no other gradients, so a lookup is the same function."""
    gy, gx = np.meshgrid(np.arange(-255, 256), np.arange(-255, 256), indexing="ij")
    return _orientations(gx, gy)


def fhog_cells(img: np.ndarray, cell_size: int = 8) -> np.ndarray:
    """The raw fHOG features, hog_rows × hog_cols × 31 float32 (empty when the image is too small)."""
    if cell_size < 2 or cell_size & (cell_size - 1):
        # Power-of-two cells keep every bilinear weight exact, which the raster-order sweep relies on.
        raise ValueError(f"cell_size must be a power of two ≥ 2, got {cell_size}")
    nr, nc = img.shape[:2]
    cells_r, cells_c = cell_counts(nr, nc, cell_size)
    hog_r, hog_c = max(cells_r - 2, 0), max(cells_c - 2, 0)
    if hog_r == 0 or hog_c == 0:
        return np.zeros((hog_r, hog_c, NUM_PLANES), _F32)
    c = cell_size
    vr, vc = min(cells_r * c, nr) - 1, min(cells_c * c, nc) - 1
    split = simd_end(vc)
    gx, gy, sq = _gradients(img, vr, vc, split)
    ori = orientation_table()[gy + 255, gx + 255].astype(np.intp)
    v = np.sqrt(sq.astype(_F32))

    # Bilinear weights: fractions of (p + 0.5)/c − 0.5, exact in float32 for power-of-two cells.
    ys, xs = np.arange(1, vr), np.arange(1, vc)
    vy0 = (((ys - c // 2) % c + 0.5) / c).astype(_F32)[:, None]
    vx0 = (((xs - c // 2) % c + 0.5) / c).astype(_F32)[None, :]
    vy1, vx1 = _F32(1) - vy0, _F32(1) - vx0
    simd = (xs < split)[None, :]
    a1, a0 = vx1 * v, vx0 * v  # SIMD lanes: vx·v first
    votes = {  # (ty, tx): 1 = the vote goes to the next cell down / right
        (0, 0): np.where(simd, vy1 * a1, (vy1 * vx1) * v),
        (1, 0): np.where(simd, vy0 * a1, (vy0 * vx1) * v),
        (0, 1): np.where(simd, vy1 * a0, (vy1 * vx0) * v),
        (1, 1): np.where(simd, vy0 * a0, (vy0 * vx0) * v),
    }

    # Cell H (with dlib's 1-cell border) gets votes from pixel rows c·(H−2) + c//2 + d, d < 2c:
    # the first c rows vote into their next cell down. Lay the pixels out so that row c·H + d of
    # a canvas is that pixel row, then sweep d (and the same for columns) in raster order.
    hn, wn = cells_r + 2, cells_c + 2
    off = 2 * c - c // 2
    canvas_shape = (c * hn + c, c * wn + c)
    ori_canvas = np.zeros(canvas_shape, np.intp)
    ori_canvas[off + 1 : off + vr, off + 1 : off + vc] = ori
    vote_canvas = {}
    for key, val in votes.items():
        vote_canvas[key] = np.zeros(canvas_shape, _F32)
        vote_canvas[key][off + 1 : off + vr, off + 1 : off + vc] = val
    flat = np.zeros(hn * wn * 18, _F32)
    base = (np.arange(hn)[:, None] * wn + np.arange(wn)[None, :]) * 18
    for dy in range(2 * c):
        for dx in range(2 * c):
            window = (slice(dy, dy + c * hn, c), slice(dx, dx + c * wn, c))
            idx = base + ori_canvas[window]
            flat[idx] += vote_canvas[(int(dy < c), int(dx < c))][window]  # one vote per cell: no repeats
    return _normalise(flat.reshape(hn, wn, 18), cells_r, cells_c, hog_r, hog_c)


def _normalise(hist: np.ndarray, cells_r: int, cells_c: int, hog_r: int, hog_c: int) -> np.ndarray:
    inner = hist[1 : cells_r + 1, 1 : cells_c + 1]
    norm = np.zeros((cells_r, cells_c), _F32)
    for o in range(9):
        s = inner[..., o] + inner[..., o + 9]
        norm = norm + s * s
    # 4 lanes: the 2×2 blocks whose corner is at (y+1, x+1), (y, x+1), (y+1, x), (y, x).
    lanes = []
    for by, bx in ((1, 1), (0, 1), (1, 0), (0, 0)):
        z = [norm[y0 + by : y0 + by + hog_r, x0 + bx : x0 + bx + hog_c] for y0, x0 in ((0, 0), (0, 1), (1, 0), (1, 1))]
        lanes.append((((z[0] + z[1]) + z[2]) + z[3]) + _EPS)
    total = np.stack(lanes, axis=-1)  # hog_r × hog_c × 4
    nn = _F32(0.2) * np.sqrt(total)
    n = _F32(0.1) / nn
    cell = hist[2 : 2 + hog_r, 2 : 2 + hog_c]  # the cell at (y+1, x+1) of the unpadded grid

    def lane_sum(h: np.ndarray) -> np.ndarray:
        return np.asarray((h[..., 0] + h[..., 1]) + (h[..., 2] + h[..., 3]))

    out = np.empty((hog_r, hog_c, NUM_PLANES), _F32)
    signed = np.minimum(cell[..., None], nn[..., None, :]) * n[..., None, :]  # hog_r × hog_c × 18 × 4
    out[..., :18] = lane_sum(signed)
    t = np.zeros((hog_r, hog_c, 4), _F32)
    for o in range(0, 18, 3):
        t = t + ((signed[..., o, :] + signed[..., o + 1, :]) + signed[..., o + 2, :])
    unsigned = cell[..., :9] + cell[..., 9:]
    out[..., 18:27] = lane_sum(np.minimum(unsigned[..., None], nn[..., None, :]) * n[..., None, :])
    out[..., 27:] = t * _TEXTURE_SCALE
    return out


def extract_fhog_features(img: np.ndarray, cell_size: int = 8, filter_rows_padding: int = 1,
                          filter_cols_padding: int = 1) -> np.ndarray:
    """dlib's ``extract_fhog_features`` into 31 planes (31 × rows × cols float32), the features
    placed for a filter of filter_rows_padding × filter_cols_padding cells; 31 × 0 × 0 when the
    image has fewer than 3 cells on a side."""
    cells = fhog_cells(img, cell_size)
    hog_r, hog_c = cells.shape[:2]
    if hog_r == 0 or hog_c == 0:
        return np.zeros((NUM_PLANES, 0, 0), _F32)
    planes = np.zeros((NUM_PLANES, hog_r + filter_rows_padding - 1, hog_c + filter_cols_padding - 1), _F32)
    top, left = (filter_rows_padding - 1) // 2, (filter_cols_padding - 1) // 2
    planes[:, top : top + hog_r, left : left + hog_c] = cells.transpose(2, 0, 1)
    return planes
