"""Where every pyramid level of an image goes on one canvas, so fHOG and the filters run once.

The fast detectors normalise the histograms and run the filters of all levels together: each
level's cell grid is placed on one canvas of cells, shifted by whole cells, so its histograms,
features and filter responses are the canvas's. Each level reserves a box of ``cells + 7``
cells a side starting 2 cells before its histogram origin: its votes (including those dlib sends
into its 1-cell border), its features and the 10×10-cell windows over them stay inside its box,
so levels never see each other. A mask says which cells hold features; everything else on the
canvas is computed and thrown away.

Boxes are packed in shelves (rows of boxes, left to right, a new shelf below when a row is
full) in a canvas as wide as the first two levels side by side: about 80 % of it is levels.

Numpy only; :mod:`face_engine.port.hog.torch_hog` uploads the masks once per image size.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from face_engine.port.hog.fhog import cell_counts
from face_engine.port.hog.model import HogScanner
from face_engine.port.hog.pyramid import level_sizes

__all__ = ["CanvasLayout", "Level", "canvas_layout"]



@dataclass(frozen=True)
class Level:
    """One pyramid level on the canvas (cell units unless marked px)."""

    index: int
    rows: int  # the level image, px
    cols: int
    cells_r: int
    cells_c: int
    cy: int  # canvas cell of the level's histogram cell (0, 0), with dlib's 1-cell border
    cx: int
    margins: tuple[int, int] = (2, 5)  # cells reserved before / after the histogram grid

    @property
    def hog_r(self) -> int:
        return max(self.cells_r - 2, 0)

    @property
    def hog_c(self) -> int:
        return max(self.cells_c - 2, 0)

    @property
    def has_features(self) -> bool:
        return self.hog_r > 0 and self.hog_c > 0

    def box(self) -> tuple[int, int]:
        """(rows, cols) of cells this level reserves."""
        extra = sum(self.margins)
        return self.cells_r + extra, self.cells_c + extra


@dataclass(frozen=True)
class CanvasLayout:
    """The canvas for one image size (after upsampling): levels, size, and cell masks."""

    levels: tuple[Level, ...]
    cell: int
    cells: tuple[int, int]  # canvas (rows, cols) in cells
    features: np.ndarray  # cells: where a level has features
    response_level: np.ndarray  # per window top-left cell: the level it belongs to, −1 for none


def _pack(boxes: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], tuple[int, int]]:
    """Shelf packing: top-left corners of the boxes and the canvas size."""
    width = boxes[0][1] + (boxes[1][1] if len(boxes) > 1 else 0)
    corners: list[tuple[int, int]] = []
    shelf_y, shelf_h, x = 0, 0, 0
    for h, w in boxes:
        if x + w > width:
            shelf_y, shelf_h, x = shelf_y + shelf_h, 0, 0
        corners.append((shelf_y, x))
        x += w
        shelf_h = max(shelf_h, h)
    return corners, (shelf_y + shelf_h, width)


@functools.lru_cache(maxsize=32)
def canvas_layout(nr: int, nc: int, scanner: HogScanner) -> CanvasLayout:
    """The canvas of an nr×nc image's pyramid (the image after any upsampling)."""
    c = scanner.cell_size
    wr, wc = scanner.filter_size
    # A window reaches (size − 1)//2 feature cells before a level's features (which start 2
    # cells into its histogram grid) and size//2 after; votes reach 1 cell past the grid.
    before = max((max(wr, wc) - 1) // 2 - 2, 0)
    after = max(max(wr, wc) - 1 - (max(wr, wc) - 1) // 2, 2)
    sizes = level_sizes(nr, nc, scanner.min_layer, scanner.max_pyramid_levels)
    drafts = [Level(i, r, k, *cell_counts(r, k, c), 0, 0, (before, after)) for i, (r, k) in enumerate(sizes)]
    corners, (ch, cw) = _pack([lv.box() for lv in drafts])
    levels = tuple(Level(lv.index, lv.rows, lv.cols, lv.cells_r, lv.cells_c, y + before, x + before, (before, after))
                   for lv, (y, x) in zip(drafts, corners, strict=True))
    feats = np.zeros((ch, cw), bool)
    resp = np.full((ch, cw), -1, np.int32)
    for lv in levels:
        if not lv.has_features:
            continue
        fy, fx = lv.cy + 2, lv.cx + 2  # feature (0, 0): histogram cell (2, 2) with the border
        feats[fy : fy + lv.hog_r, fx : fx + lv.hog_c] = True
        # dlib scans windows over features [−(size − 1)//2, hog + size//2): for the 10-cell
        # filters, top-left cells from fy − 4 to fy + hog_r − 5.
        top, left = fy - (wr - 1) // 2, fx - (wc - 1) // 2
        resp[top : top + lv.hog_r, left : left + lv.hog_c] = lv.index
    return CanvasLayout(levels, c, (ch, cw), feats, resp)
