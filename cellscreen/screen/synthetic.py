"""Synthetic smear fields with a known answer: real cells placed on a real smear's background.

No public malaria field set has every cell marked, but the NIH malaria cells
are real cells cut from real field photographs along their outline.  Placed
apart from each other on a background with the colour, illumination and
grain of a real smear field (``smear_background``), they make a field whose
every cell, class and count is known, so the screening pipeline can be held
to exact counts and an exact parasitemia end to end.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

__all__ = ["PlacedCell", "SyntheticField", "smear_background", "cell_mask", "regular_cells", "confident_cells",
           "make_field"]


@dataclasses.dataclass(frozen=True)
class PlacedCell:
    """One cell put on a synthetic field, in the field's pixels."""

    label: str  # its class, e.g. the NIH folder it came from
    positive: bool
    centre: tuple[float, float]  # (x, y) of its pixels' centroid
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1), end exclusive
    area: int
    source: str = ""  # the file it was read from, if any


@dataclasses.dataclass
class SyntheticField:
    """A synthetic field and its truth."""

    image: np.ndarray  # (H, W, 3) uint8
    cells: list[PlacedCell]
    cell_diameter: float  # median equivalent diameter of the placed cells, px

    @property
    def positive(self) -> int:
        return sum(cell.positive for cell in self.cells)

    @property
    def parasitemia(self) -> float:
        """Positive cells over all cells, in percent."""
        return 100.0 * self.positive / len(self.cells) if self.cells else 0.0


def cell_mask(cell: np.ndarray) -> np.ndarray:
    """The cell's own pixels in a crop that is black outside the cell (as the NIH cells are)."""
    return ndi.binary_fill_holes(cell.max(axis=2) > 0)


def smear_background(field: np.ndarray, size: tuple[int, int], *, seed: int = 0) -> np.ndarray:
    """A cell-free background of ``size`` = (height, width) with a real field's colour, illumination and grain.

    The field's background is its brighter part in green (Otsu), away from cell edges; its illumination is
    that background smoothed over an eighth of the field (blanks left by cells filled in by normalised
    convolution), stretched to ``size``; its grain is noise with the spread the background shows around it.
    """
    from skimage.filters import threshold_otsu  # only building a background needs it

    field = np.asarray(field, dtype=np.float32)
    green = field[..., 1]
    background = ndi.binary_erosion(green > threshold_otsu(green), iterations=3)
    if background.sum() < 100:
        raise ValueError("the field shows too little background to estimate it")
    sigma = max(field.shape[:2]) / 8
    weight = ndi.gaussian_filter(background.astype(np.float32), sigma) + 1e-6
    light = np.stack([ndi.gaussian_filter(field[..., c] * background, sigma) / weight for c in range(3)], axis=-1)
    grain = (field - light)[background].std(axis=0)
    height, width = size
    stretched = np.stack([np.asarray(Image.fromarray(light[..., c]).resize((width, height), Image.Resampling.BILINEAR))
                          for c in range(3)], axis=-1)
    noise = np.random.default_rng(seed).normal(0.0, 1.0, (height, width, 3)) * grain
    return np.clip(np.rint(stretched + noise), 0, 255).astype(np.uint8)


def regular_cells(cell_folder: str | Path, *, count: int, seed: int = 0, slide: str | None = None,
                  min_solidity: float = 0.95, size_range: tuple[float, float] = (0.85, 1.15)) -> list[Path]:
    """``count`` cell files of ``cell_folder`` (one class folder of NIH cells) that look like one whole,
    round-ish red cell: convex (``min_solidity``) and of about the median size; drawn at random, sorted.

    ``slide`` (``C39``) keeps the cells of one slide, stained alike as the cells of one real field are."""
    from skimage.measure import regionprops  # only choosing cells needs it

    from cellscreen.data.images import load_rgb  # the package's own reader of cell files

    paths = sorted(Path(cell_folder).glob("*.png"))
    if slide is not None:
        paths = [path for path in paths if re.match(rf"{re.escape(slide)}(?!\d)", path.name)]
    order = np.random.default_rng(seed).permutation(len(paths))
    picked, areas = [], []
    for i in order:
        mask = cell_mask(load_rgb(paths[i]))
        props = regionprops(mask.astype(np.uint8))
        if len(props) != 1 or props[0].solidity < min_solidity:
            continue
        picked.append(paths[i])
        areas.append(int(mask.sum()))
        if len(picked) >= 3 * count:
            break
    typical = float(np.median(areas)) if areas else 0.0
    low, high = size_range
    chosen = [p for p, a in zip(picked, areas) if low**2 * typical <= a <= high**2 * typical][:count]
    if len(chosen) < count:
        where = f"{cell_folder}" + (f" (slide {slide})" if slide else "")
        raise ValueError(f"only {len(chosen)} regular cells found in {where}, {count} asked for")
    return sorted(chosen)


def confident_cells(predictor, paths: Sequence[Path], label: str, *, min_probability: float = 0.95) -> list[Path]:
    """The cells of ``paths`` (all of class ``label``) that ``predictor`` gives ``label`` with at least
    ``min_probability``, read as ``predict`` reads a file: cells whose class a field test can demand exactly."""
    from cellscreen.data.images import load_prepared  # the package's own reader of cell files

    if not paths:
        return []
    batch = np.stack([load_prepared(path, size=predictor.input_size, crop=predictor.border_crop,
                                    interpolation=predictor.interpolation) for path in paths])
    proba = predictor.predict(batch)[:, list(predictor.classes).index(label)]
    return [path for path, p in zip(paths, proba) if p >= min_probability]


def _scaled(cell: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """A cell crop and its mask resized by ``scale``."""
    mask = cell_mask(cell)
    if scale == 1.0:
        return cell, mask
    size = (max(1, round(cell.shape[1] * scale)), max(1, round(cell.shape[0] * scale)))
    filled = cell.copy()
    filled[~mask] = np.median(cell[mask], axis=0)  # so the black outside does not darken the resized edge
    pixels = np.asarray(Image.fromarray(filled).resize(size, Image.Resampling.BICUBIC))
    shrunk = np.asarray(Image.fromarray(mask.astype(np.float32)).resize(size, Image.Resampling.BILINEAR)) >= 0.5
    return pixels, shrunk


def make_field(cells: Sequence[np.ndarray], labels: Sequence[str], positive: Sequence[bool],
               background: np.ndarray, *, scale: float = 1.0, gap: float = 0.3, seed: int = 0,
               sources: Sequence[str] | None = None, attempts: int = 2000) -> SyntheticField:
    """Place ``cells`` (crops, black outside each cell), resized by ``scale``, at random on ``background``
    without touching one another (at least ``gap`` of a cell diameter apart) or the image border.

    Raises ``ValueError`` when the background has no room for them all.
    """
    rng = np.random.default_rng(seed)
    image = np.array(background, dtype=np.uint8, copy=True)
    height, width = image.shape[:2]
    scaled = [_scaled(np.asarray(cell, dtype=np.uint8), scale) for cell in cells]
    diameter = float(np.median([2 * np.sqrt(mask.sum() / np.pi) for _, mask in scaled])) if scaled else 0.0
    spacing = max(2, int(round(gap * diameter)))
    taken = np.zeros((height, width), bool)  # every placed cell grown by the spacing
    placed = []
    sources = list(sources) if sources is not None else [""] * len(cells)
    for (pixels, mask), label, hit, source in zip(scaled, labels, positive, sources):
        h, w = mask.shape
        for _ in range(attempts):
            y0 = int(rng.integers(spacing, max(spacing + 1, height - h - spacing)))
            x0 = int(rng.integers(spacing, max(spacing + 1, width - w - spacing)))
            if y0 + h + spacing <= height and x0 + w + spacing <= width and not taken[y0:y0 + h, x0:x0 + w][mask].any():
                break
        else:
            raise ValueError(f"no room for {len(cells)} cells of {diameter:.0f} px on a {width}x{height} field")
        image[y0:y0 + h, x0:x0 + w][mask] = pixels[mask]
        grown = ndi.binary_dilation(np.pad(mask, spacing), iterations=spacing)
        taken[y0 - spacing:y0 + h + spacing, x0 - spacing:x0 + w + spacing] |= grown
        ys, xs = np.nonzero(mask)
        placed.append(PlacedCell(label, bool(hit), (float(x0 + xs.mean()), float(y0 + ys.mean())),
                                 (x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1,
                                  y0 + int(ys.max()) + 1), int(mask.sum()), source))
    return SyntheticField(image, placed, diameter)
