"""Cutting red cells out of a field as the training cells were cut."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from cellscreen.errors import UserError
from cellscreen.screen import cut


@dataclass(frozen=True)
class Cell:
    id: int
    box: tuple[int, int, int, int]


def two_touching_cells() -> tuple[np.ndarray, np.ndarray]:
    """A 60x80 field: a pink disc (id 1) touching a blue disc (id 2) on a grey background."""
    yy, xx = np.mgrid[:60, :80]
    labels = np.zeros((60, 80), np.int32)
    labels[(yy - 30) ** 2 + (xx - 25) ** 2 < 15**2] = 1
    labels[((yy - 30) ** 2 + (xx - 52) ** 2 < 13**2) & (labels == 0)] = 2
    rgb = np.full((60, 80, 3), 200, np.uint8)
    rgb[labels == 1] = (220, 150, 160)
    rgb[labels == 2] = (90, 90, 200)
    return rgb, labels


def box_of(labels: np.ndarray, cell_id: int) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(labels == cell_id)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def test_a_cell_is_its_own_pixels_in_its_tight_box_black_outside():
    rgb, labels = two_touching_cells()
    crop = cut.cut_cell(rgb, labels, 1, box_of(labels, 1))
    x0, y0, x1, y1 = box_of(labels, 1)
    assert crop.shape == (y1 - y0, x1 - x0, 3) and crop.dtype == np.uint8
    inside = labels[y0:y1, x0:x1] == 1
    assert (crop[inside] == (220, 150, 160)).all()
    assert (crop[~inside] == 0).all()  # the background and the touching neighbour are black
    assert not (crop == (90, 90, 200)).all(axis=-1).any()
    for edge in (crop[0], crop[-1], crop[:, 0], crop[:, -1]):  # tight: the cell reaches every side
        assert edge.any()


def test_a_cell_is_enlarged_by_the_scale_and_stays_black_outside():
    rgb, labels = two_touching_cells()
    small = cut.cut_cell(rgb, labels, 2, box_of(labels, 2))
    large = cut.cut_cell(rgb, labels, 2, box_of(labels, 2), scale=2.5)
    assert large.shape[0] == pytest.approx(2.5 * small.shape[0], abs=3)
    cell = large.max(axis=2) > 0
    assert 2 * np.sqrt(cell.sum() / np.pi) == pytest.approx(2.5 * 2 * np.sqrt((small.max(axis=2) > 0).sum() / np.pi),
                                                            rel=0.05)
    assert np.abs(large[cell].astype(int) - (90, 90, 200)).max(axis=1).mean() < 6  # no grey blended in much
    assert (large[~cell] == 0).all()


def test_cut_cells_keeps_the_order_and_model_batch_gives_the_model_input():
    rgb, labels = two_touching_cells()
    cells = [Cell(2, box_of(labels, 2)), Cell(1, box_of(labels, 1))]
    crops = cut.cut_cells(rgb, labels, cells, scale=2.0)
    assert [tuple(c[c.shape[0] // 2, c.shape[1] // 2]) for c in crops] == [(90, 90, 200), (220, 150, 160)]
    batch = cut.model_batch(crops, 16)
    assert batch.shape == (2, 16, 16, 3) and batch.dtype == np.uint8
    assert cut.model_batch([], 16).shape == (0, 16, 16, 3)


def test_field_scale_takes_the_users_size_before_the_measured_one():
    assert cut.field_scale(50.0) == pytest.approx(cut.TRAINING_CELL_DIAMETER / 50)
    assert cut.field_scale(50.0, cell_diameter=25.0) == pytest.approx(cut.TRAINING_CELL_DIAMETER / 25)
    by_microns = cut.field_scale(50.0, microns_per_pixel=0.15)
    assert by_microns == pytest.approx(cut.TRAINING_CELL_DIAMETER / (cut.RED_CELL_MICRONS / 0.15))
    assert cut.field_scale(None) == 1.0  # nothing measured: nothing to cut either


@pytest.mark.parametrize("kwargs", [{"cell_diameter": 0.0}, {"microns_per_pixel": -1.0},
                                    {"cell_diameter": 30.0, "microns_per_pixel": 0.1}])
def test_field_scale_refuses_sizes_that_cannot_be(kwargs):
    with pytest.raises(UserError):
        cut.field_scale(40.0, **kwargs)


@pytest.mark.real_data
def test_the_training_cell_diameter_is_what_the_nih_cells_measure(real_data):
    measured = cut.measure_cell_diameter(real_data / "malaria-nih" / "cell_images")
    assert measured["cells"] == 500
    assert measured["median"] == pytest.approx(cut.TRAINING_CELL_DIAMETER, abs=0.01)
