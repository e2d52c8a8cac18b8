"""Cutting and classifying a field's white cells the way a leukemia model's training cells were cut.

``screen --cells white`` sends the white cells the cell finder found to a
leukemia model instead of the red cells to a malaria model.  The two leukemia
sets cellscreen knows were cut in two different ways, so each white cell is
cut as its model's own training cells were (``TRAINING_WHITE_CELLS``):

- C-NMC 2019 (``cnmc``): one segmented cell, black outside its outline,
  centred on a 450x450 black frame.  Its frames hold no red cell and carry no
  pixel size, so the only scale that can be read from them is the white
  cells' own: each white cell is enlarged so that it is as wide as the
  median C-NMC cell (215.74 px) and centred on a black 450x450 frame.
- Taleqani ALL set (``taleqani``, ``taleqani-binary``): 224x224 crops of the
  smear, the cells with their surroundings (red cells around, no outline).
  Its frames do show red cells, so a field is enlarged until its red cells
  are as wide as the Taleqani frames' red cells (17.15 px) and a 224x224
  window centred on each white cell is cut.  Where the window runs past the
  field's edge the field is mirrored, so the frame stays a picture of smear
  as every Taleqani frame is (a field of a smaller area than a Taleqani frame
  otherwise leaves most of it one flat colour, which no training image shows).

A model trained on anything else (a folder of the lab's own cells) is
refused for white cells: how its cells were cut is not known.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from cellscreen.errors import UserError
from cellscreen.screen.cut import cut_cell

__all__ = ["WhiteCut", "TRAINING_WHITE_CELLS", "RED_CELL_SETS", "CELL_KINDS", "check_model_cells",
           "blast_classes_for", "cut_white_cell", "cut_white_cells", "measure_white_cells"]

CELL_KINDS = ("red", "white")


@dataclasses.dataclass(frozen=True)
class WhiteCut:
    """How one leukemia set's training cells were cut, and at what scale."""

    style: str  # "outline": the cell alone, black outside, centred on a black frame; "context": a window of smear
    frame: int  # side of the training images, px
    diameter: float  # median training diameter, px, of the cells named by ``reference``
    reference: str  # "white": the white cells' own diameter sets the scale; "red": the field's red cells' does
    blast_classes: tuple[str, ...]  # the classes that are blasts, when the model names no positive class


# Measured with `python -c "from cellscreen.screen.white import measure_white_cells as m; print(m())"` (the
# 54 C-NMC cells, equivalent diameter of the non-black pixels: median 215.74 px, quartiles 183.7 and 235.8;
# 200 Taleqani images drawn with seed 0, the red-cell diameter the classical cell finder measures in each:
# median 17.15 px, quartiles 16.22 and 18.92; the finder's own measure, so measure again when the finder changes:
# before the finder's fibre rule of 2026-12-07 it gave 17.04).
TRAINING_WHITE_CELLS: dict[str, WhiteCut] = {
    "cnmc": WhiteCut("outline", 450, 215.74, "white", ("all",)),
    "taleqani": WhiteCut("context", 224, 17.15, "red", ("Early", "Pre", "Pro")),
    "taleqani-binary": WhiteCut("context", 224, 17.15, "red", ("ALL",)),
}
RED_CELL_SETS = ("malaria-nih",)  # datasets of red cells (a model trained on them screens red cells)


def check_model_cells(dataset: str | None, cells: str, model: str) -> WhiteCut | None:
    """How white cells are cut for a model trained on ``dataset`` (None for red cells); a ``UserError`` when
    the model was trained on the other kind of cell than ``cells`` asks for, as far as its dataset tells."""
    if cells not in CELL_KINDS:
        raise UserError(f"--cells must be one of {', '.join(CELL_KINDS)} (got {cells!r})")
    known = ", ".join(TRAINING_WHITE_CELLS)
    if cells == "red":
        if dataset in TRAINING_WHITE_CELLS:
            raise UserError(f"{model} is a leukemia model (trained on {dataset} white cells): screen with "
                            "--cells white, or give a red-cell (malaria) model")
        return None
    if dataset in RED_CELL_SETS:
        raise UserError(f"{model} is a red-cell model (trained on {dataset}): --cells white needs a leukemia "
                        f"model trained on {known} (e.g. `cellscreen train --dataset taleqani-binary`)")
    if dataset not in TRAINING_WHITE_CELLS:
        raise UserError(f"{model} was trained on {dataset or 'an unnamed dataset'}, whose white cells were cut in "
                        f"a way cellscreen does not know: --cells white takes models trained on {known}")
    return TRAINING_WHITE_CELLS[dataset]


def blast_classes_for(classes: Sequence[str], positive_class: str | None, white_cut: WhiteCut,
                      given: Sequence[str] | None = None) -> tuple[str, ...]:
    """The model's classes that count as blasts: ``given`` (``--blast-classes``), else the model's positive
    class, else the training set's malignant classes; each must be one of ``classes``, and not all of them."""
    if given:
        chosen = tuple(dict.fromkeys(name.strip() for name in given if name.strip()))
    elif positive_class is not None:
        chosen = (positive_class,)
    else:
        chosen = tuple(name for name in white_cut.blast_classes if name in classes)
    unknown = [name for name in chosen if name not in classes]
    if unknown or not chosen:
        raise UserError(f"blast classes {', '.join(unknown) or '(none)'} are not classes of the model; choose "
                        f"from {', '.join(classes)} with --blast-classes")
    if len(chosen) == len(classes):
        raise UserError(f"every class of the model ({', '.join(classes)}) was named a blast class; leave at least "
                        "one class for normal cells")
    return chosen


def _outline_frame(rgb: np.ndarray, labels: np.ndarray, cell, white_cut: WhiteCut) -> np.ndarray:
    """The cell alone (black outside its outline), enlarged to the training cells' median width, centred on a
    black frame of the training side."""
    own = 2.0 * np.sqrt(max(cell.area, 1) / np.pi)
    crop = cut_cell(rgb, labels, cell.id, cell.box, white_cut.diameter / own)
    side = white_cut.frame
    frame = np.zeros((side, side, 3), np.uint8)
    height, width = min(side, crop.shape[0]), min(side, crop.shape[1])
    top, left = (crop.shape[0] - height) // 2, (crop.shape[1] - width) // 2  # a cell larger than the frame: its middle
    y0, x0 = (side - height) // 2, (side - width) // 2
    frame[y0:y0 + height, x0:x0 + width] = crop[top:top + height, left:left + width]
    return frame


def _context_frame(rgb: np.ndarray, cell, white_cut: WhiteCut, scale: float) -> np.ndarray:
    """A window of the field centred on the cell that, enlarged by ``scale``, is the training side across; the
    field mirrored where the window runs past the field's edge."""
    side = white_cut.frame
    reach = side / scale  # the window's side in the field's pixels
    cx, cy = cell.centre
    x0, y0 = int(round(cx - reach / 2)), int(round(cy - reach / 2))
    span = max(1, int(round(reach)))
    height, width = rgb.shape[:2]
    top, left, bottom, right = max(0, y0), max(0, x0), min(height, y0 + span), min(width, x0 + span)
    # only the part of the field inside the window is copied, then mirrored out to the window's edges
    pad = ((top - y0, y0 + span - bottom), (left - x0, x0 + span - right), (0, 0))
    window = np.pad(rgb[top:bottom, left:right], pad, mode="symmetric")
    resample = Image.Resampling.BOX if span > side else Image.Resampling.BICUBIC
    return np.asarray(Image.fromarray(window).resize((side, side), resample))


def cut_white_cell(rgb: np.ndarray, labels: np.ndarray, cell, white_cut: WhiteCut, red_diameter: float) -> np.ndarray:
    """One white cell (``id``, ``box``, ``area``, ``centre`` as ``FoundCell``) as its model's training cells were
    cut: a ``white_cut.frame``-sided RGB image.  ``red_diameter`` is the field's red-cell diameter, px."""
    if white_cut.style == "outline":
        return _outline_frame(rgb, labels, cell, white_cut)
    return _context_frame(rgb, cell, white_cut, white_cut.diameter / red_diameter)


def cut_white_cells(rgb: np.ndarray, labels: np.ndarray, cells: Sequence, white_cut: WhiteCut,
                    red_diameter: float) -> list[np.ndarray]:
    """``cut_white_cell`` of each of ``cells``, in order."""
    return [cut_white_cell(rgb, labels, cell, white_cut, red_diameter) for cell in cells]


def measure_white_cells(data: str = "../shared/data", *, images: int = 200, seed: int = 0) -> dict[str, dict]:
    """What ``TRAINING_WHITE_CELLS`` records: the C-NMC cells' median width (equivalent diameter of the non-black
    pixels) and the red-cell diameter the classical finder measures in ``images`` Taleqani images."""
    from cellscreen.data.images import load_rgb  # only this measurement reads files
    from cellscreen.screen.detect import find_cells

    def summary(values: list[float]) -> dict:
        low, median, high = np.percentile(values, [25, 50, 75])
        return {"cells": len(values), "median": round(float(median), 2), "q25": round(float(low), 2),
                "q75": round(float(high), 2)}

    cnmc = sorted(Path(data, "cnmc-sample").glob("*/*.bmp"))
    widths = [2 * np.sqrt((load_rgb(path).max(axis=2) > 0).sum() / np.pi) for path in cnmc]
    taleqani = sorted(Path(data, "leukemia-taleqani").glob("*/*.jpg"))
    chosen = sorted(np.random.default_rng(seed).choice(len(taleqani), min(images, len(taleqani)), replace=False))
    red = [find_cells(load_rgb(taleqani[i])).cell_diameter for i in chosen]
    return {"cnmc white width": summary(widths), "taleqani red diameter": summary(red)}
