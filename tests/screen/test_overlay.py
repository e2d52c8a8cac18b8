"""The overlay picture: each cell outlined in its colour, drawn as scikit-image and SciPy would draw it (the
faster array code is checked against them), and written as a lossless PNG."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

from cellscreen.screen import overlay


def discs(height: int, width: int, seed: int) -> np.ndarray:
    """A label image of touching and overlapping discs, some against the image border."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    labels = np.zeros((height, width), np.int32)
    for cell_id in range(1, 30):
        y, x, r = rng.integers(0, height), rng.integers(0, width), rng.integers(4, max(5, height // 6))
        labels[(yy - y) ** 2 + (xx - x) ** 2 < r**2] = cell_id
    return labels


def reference(rgb: np.ndarray, labels: np.ndarray, colours: dict, max_side: int) -> np.ndarray:
    """What draw_overlay drew with find_boundaries and maximum_filter (the labels shrunk by nearest neighbour)."""
    height, width = labels.shape
    scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BOX))
        labels = labels[np.ix_(nearest(height, size[1]), nearest(width, size[0]))]
    lut = np.zeros((labels.max() + 1, 3), np.uint8)
    drawn = np.zeros(len(lut), bool)
    for cell_id, colour in colours.items():
        lut[cell_id], drawn[cell_id] = colour, True
    edge = find_boundaries(labels, mode="inner") & drawn[labels]
    thickness = max(1, round(max(labels.shape) / 800))
    if thickness > 1:
        grown = ndi.maximum_filter(np.where(edge, labels, 0), size=(thickness, thickness))
        edge = (grown == labels) & (labels > 0) & drawn[labels]
    out = rgb.copy()
    out[edge] = lut[labels[edge]]
    return out


def nearest(full: int, shrunk: int) -> np.ndarray:
    return np.minimum(((np.arange(shrunk) + 0.5) * (full / shrunk)).astype(np.intp), full - 1)


@pytest.mark.parametrize(("full", "shrunk"), [(3000, 2048), (2000, 1365), (5312, 2048), (2988, 1152)])
def test_labels_are_shrunk_as_pils_nearest_neighbour_within_a_pixel(full, shrunk):
    rows = np.arange(full, dtype=np.int32)[:, None].repeat(2, axis=1)
    pil = np.asarray(Image.fromarray(rows).resize((2, shrunk), Image.Resampling.NEAREST))[:, 0]
    ours = overlay.draw_overlay(np.zeros((full, 2, 3), np.uint8), rows, {}, max_side=shrunk)
    assert ours.shape[0] == shrunk
    assert np.abs(pil - nearest(full, shrunk)).max() <= 1 and (pil == nearest(full, shrunk)).mean() > 0.99


@pytest.mark.parametrize(("height", "width", "max_side"), [(90, 120, 2048), (1300, 1700, 2048), (1800, 2500, 1700),
                                                           (3000, 2000, 2048)])
def test_outlines_are_drawn_as_find_boundaries_and_maximum_filter_draw_them(height, width, max_side):
    labels = discs(height, width, seed=height)
    rgb = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    colours = {cell_id: (cell_id * 8 % 256, 200, 255 - cell_id) for cell_id in range(1, 30) if cell_id % 4}
    drawn = overlay.draw_overlay(rgb, labels, colours, max_side=max_side)
    assert np.array_equal(drawn, reference(rgb, labels, colours, max_side))
    assert (drawn != np.asarray(Image.fromarray(rgb).resize(drawn.shape[1::-1], Image.Resampling.BOX))).any()


def test_the_png_holds_the_overlay_exactly():
    picture = np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    with Image.open(io.BytesIO(overlay.overlay_png(picture))) as image:
        assert image.format == "PNG" and np.array_equal(np.asarray(image), picture)
