"""Cutting each red cell out of a field the way the model's training cells were cut.

The NIH malaria cells (``malaria-nih/cell_images``) are the cell along its
outline with black outside, in the cell's tight box (no margin), at the
resolution of the phone photographs they came from, where a red cell is
about 126 px across.  A field from another microscope shows cells at another
size, so each field is first brought to that scale: by the median red-cell
diameter the cell finder measured in it, or by the diameter or the microns
per pixel the user gives.  The model then pads and resizes the cut exactly as
it does an NIH cell.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from cellscreen.data.images import DEFAULT_INTERPOLATION, border_crop, resize_square
from cellscreen.errors import UserError

__all__ = ["TRAINING_CELL_DIAMETER", "RED_CELL_MICRONS", "field_scale", "cut_cell", "cut_cells", "model_batch",
           "measure_cell_diameter"]

# The median equivalent diameter (2 * sqrt(area / pi) of the non-black pixels) of 500 NIH cells drawn at random
# from malaria-nih/cell_images (both classes, seed 0): 125.45 px, quartiles 116.5 and 135.6 px.  Measured with
#   python -c "from cellscreen.screen.cut import measure_cell_diameter as m; \
#              print(m('../shared/data/malaria-nih/cell_images'))"
TRAINING_CELL_DIAMETER = 125.45
# A normal red cell's diameter in a thin film (textbook value, 6-8 um), to turn microns per pixel into pixels.
RED_CELL_MICRONS = 7.5
_MARGIN = 2  # pixels of the field kept around a cell while resizing, so its edge is resampled from real pixels


def field_scale(measured_diameter: float | None, *, cell_diameter: float | None = None,
                microns_per_pixel: float | None = None) -> float:
    """How much a field is enlarged to show its red cells at the training cells' size.

    ``cell_diameter`` (pixels) or ``microns_per_pixel`` given by the user win over the diameter the cell finder
    measured in the field.
    """
    if cell_diameter is not None and microns_per_pixel is not None:
        raise UserError("give the cell diameter or the microns per pixel, not both")
    if microns_per_pixel is not None:
        if not microns_per_pixel > 0:
            raise UserError(f"microns per pixel must be above 0 (got {microns_per_pixel})")
        cell_diameter = RED_CELL_MICRONS / microns_per_pixel
    diameter = cell_diameter if cell_diameter is not None else measured_diameter
    if diameter is None or not np.isfinite(diameter) or diameter <= 0:
        if cell_diameter is not None:
            raise UserError(f"the cell diameter must be above 0 pixels (got {cell_diameter})")
        return 1.0  # no red cell measured: nothing will be cut anyway
    return TRAINING_CELL_DIAMETER / float(diameter)


def _resized(pixels: np.ndarray, size: tuple[int, int], resample) -> np.ndarray:
    """``pixels`` (uint8 RGB or float32 mask) resized to ``size`` = (width, height), antialiased."""
    if pixels.shape[1] == size[0] and pixels.shape[0] == size[1]:
        return pixels
    return np.asarray(Image.fromarray(pixels).resize(size, resample))


def cut_cell(rgb: np.ndarray, labels: np.ndarray, cell_id: int, box: tuple[int, int, int, int],
             scale: float = 1.0) -> np.ndarray:
    """One cell as the training cells were cut: its own pixels (``labels == cell_id``) enlarged by ``scale``,
    black outside its outline, in its tight box.  ``box`` is ``(x0, y0, x1, y1)``, end exclusive."""
    x0, y0, x1, y1 = box
    height, width = labels.shape
    top, left = max(0, y0 - _MARGIN), max(0, x0 - _MARGIN)
    bottom, right = min(height, y1 + _MARGIN), min(width, x1 + _MARGIN)
    region = rgb[top:bottom, left:right]
    mask = labels[top:bottom, left:right] == cell_id
    size = (max(1, round(region.shape[1] * scale)), max(1, round(region.shape[0] * scale)))
    region = _resized(np.ascontiguousarray(region), size, Image.Resampling.BICUBIC)
    if size != (mask.shape[1], mask.shape[0]):  # the outline resampled smoothly, then cut at half way
        mask = _resized(mask.view(np.uint8) * np.uint8(255), size, Image.Resampling.BILINEAR) >= 128
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:  # a cell too small to keep one pixel at this scale: keep its box
        return region.copy()
    tight = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
    crop = region[tight].copy()
    crop[~mask[tight]] = 0
    return crop


def cut_cells(rgb: np.ndarray, labels: np.ndarray, cells: Sequence, scale: float = 1.0) -> list[np.ndarray]:
    """``cut_cell`` of each of ``cells`` (anything with ``id`` and ``box``, e.g. ``FoundCell``), in order."""
    return [cut_cell(rgb, labels, cell.id, cell.box, scale) for cell in cells]


def model_batch(crops: Sequence[np.ndarray], size: int, interpolation: str = DEFAULT_INTERPOLATION,
                crop_pixels: int = 0) -> np.ndarray:
    """Cut cells as a model takes them: ``(N, size, size, 3)`` uint8, each padded to a square with black and
    resized as ``predict`` does an image file (``crop_pixels``, the model's ``border_crop``, first taken off
    each side)."""
    if not crops:
        return np.zeros((0, size, size, 3), np.uint8)
    return np.stack([resize_square(border_crop(crop, crop_pixels), size, interpolation) for crop in crops])


def measure_cell_diameter(cell_images: str | Path, *, cells: int = 500, seed: int = 0) -> dict[str, float]:
    """The median and quartiles of the equivalent diameter of ``cells`` cell crops drawn at random from
    ``cell_images`` (class folders of PNGs, black outside each cell): what ``TRAINING_CELL_DIAMETER`` records."""
    from cellscreen.data.images import load_rgb  # only this measurement reads files

    paths = sorted(Path(cell_images).glob("*/*.png"))
    if not paths:
        raise UserError(f"no PNG cells in the class folders of {cell_images}")
    chosen = np.random.default_rng(seed).choice(len(paths), size=min(cells, len(paths)), replace=False)
    diameters = [2 * np.sqrt((load_rgb(paths[i]).max(axis=2) > 0).sum() / np.pi) for i in sorted(chosen)]
    low, median, high = np.percentile(diameters, [25, 50, 75])
    return {"cells": len(diameters), "median": round(float(median), 2), "q25": round(float(low), 2),
            "q75": round(float(high), 2)}
