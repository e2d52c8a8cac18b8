"""bench/screen_specificity.py's bookkeeping: the shares it reports from kept cells (no real data needed)."""

from __future__ import annotations

import sys

import numpy as np

from tests.benchscripts import BENCH

sys.path.insert(0, str(BENCH))
import screen_specificity  # noqa: E402  (a script, imported as the benchmark imports it)


class FlagsBrightCells:
    """A stand-in model: Parasitized when a cell's first pixel is bright."""

    classes = ("Uninfected", "Parasitized")
    positive_class = "Parasitized"
    description = {}

    def predict_batched(self, pixels, batch_size):
        positive = (pixels[:, 0, 0, 0] > 127).astype(np.float32)
        return np.stack([1 - positive, positive], axis=1)


def test_kept_cells_give_each_part_its_cells_fields_and_flagged_share(tmp_path):
    cells = np.zeros((5, 4, 4, 3), np.uint8)
    cells[[0, 3]] = 255  # two flagged: one on fully labelled field 1, one on field 500 (labelled in part)
    path = tmp_path / "kept.npz"
    np.savez(path, chula_pixels=cells, chula_field=np.array(["1", "1", "1", "500", "500"]),
             chula_fields=np.array(["1", "500", "501"]), chula_not_single=np.array([2, 3, 4]))
    result = screen_specificity.from_cells(str(path), [FlagsBrightCells()], [{}])[0]
    every, fully = result["chula_all"], result["chula_fully_labelled"]
    assert (every["fields"], every["red_counted"], every["flagged"], every["not_single"]) == (3, 5, 2, 9)
    assert (fully["fields"], fully["red_counted"], fully["flagged"], fully["not_single"]) == (1, 3, 1, 2)
    assert every["percent"] == 40.0 and every["ci95"][0] < 40.0 < every["ci95"][1]
