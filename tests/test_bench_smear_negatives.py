"""bench/smear_negatives.py on drawn fields: the free platelets it takes and how it lays one on a cell."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

from cellscreen.screen.detect import find_cells
from tests.benchscripts import BENCH
from tests.screen.test_detect import drawn_field

sys.path.insert(0, str(BENCH))
import smear_negatives  # noqa: E402  (a script, imported as the benchmark imports it)


@pytest.fixture(scope="module")
def field():
    rgb, truth = drawn_field()
    return rgb, truth, find_cells(rgb)


def test_the_free_platelet_is_taken_and_the_white_cells_nucleus_is_not(field):
    rgb, _, detection = field
    platelets = smear_negatives.free_platelets(rgb, detection)
    assert len(platelets) == 1
    patch = platelets[0]
    scale = 125.45 / detection.cell_diameter  # drawn at the field's scale, laid at the NIH cells'
    assert patch.shape[0] == pytest.approx((8 + 1 + 7) * scale, rel=0.3)
    assert patch.min() < 0.7, "the platelet's chromatin lets little light through"
    assert np.all(patch[0] > 0.95) and np.all(patch[:, -1] > 0.95), "around it, all of it"


def test_labelled_boxes_choose_the_platelets(field):
    rgb, truth, detection = field
    x, y = truth["platelet"]
    assert len(smear_negatives.free_platelets(rgb, detection, [(x - 6, y - 6, x + 6, y + 6)])) == 1
    assert smear_negatives.free_platelets(rgb, detection, [(150, 5, 170, 20)]) == []


def test_a_field_without_background_gives_no_platelet(field):
    rgb, _, detection = field
    covered = type(detection)(labels=np.ones_like(detection.labels), cells=detection.cells,
                              cell_diameter=detection.cell_diameter)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no median of nothing
        assert smear_negatives.free_platelets(rgb, covered) == []


def test_a_platelet_is_laid_inside_the_cell_and_darkens_only_its_own_pixels():
    cell = np.zeros((60, 60, 3), np.uint8)
    yy, xx = np.mgrid[:60, :60]
    inside = (yy - 30) ** 2 + (xx - 30) ** 2 <= 28**2
    cell[inside] = (200, 150, 180)
    patch = np.full((6, 6, 3), 0.5, np.float32)
    laid = smear_negatives.lay_platelet(cell, patch, np.random.default_rng(0))
    assert np.all(laid[~inside] == 0), "black outside the outline stays black"
    darker = (laid != cell).any(axis=2)
    assert darker.sum() == 36 and inside[darker].all()
    assert np.all(laid[darker] == (100, 75, 90))
    assert smear_negatives.lay_platelet(cell[:4, :4], patch, np.random.default_rng(0)) is None


def test_an_existing_folder_is_not_written_into(tmp_path, monkeypatch):
    (tmp_path / "out" / "Uninfected").mkdir(parents=True)
    monkeypatch.setattr(sys, "argv", ["smear_negatives.py", "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit, match="exists already"):
        smear_negatives.main()
