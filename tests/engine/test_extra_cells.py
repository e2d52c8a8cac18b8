"""Extra training cells from a folder outside the dataset: joined to the training subset only."""

from __future__ import annotations

import json

import pytest

from cellscreen.config import load_config
from cellscreen.engine.extra_cells import extra_cells
from cellscreen.engine.train import train
from cellscreen.errors import UserError
from tests.conftest import make_malaria_like, write_cell


def test_extra_cells_are_read_as_the_cache_reads_cells_and_get_their_class(tmp_path):
    for n in range(3):
        write_cell(tmp_path / "extra" / "Uninfected" / f"smear_{n}.png", seed=n, size=(14, 9))
    (tmp_path / "extra" / "Uninfected" / "notes.txt").write_text("not an image")
    pixels, targets, paths = extra_cells(tmp_path / "extra", ["Uninfected", "Parasitized"], size=16, crop=0,
                                         interpolation="bicubic")
    assert pixels.shape == (3, 16, 16, 3) and pixels.dtype.name == "uint8"
    assert targets.tolist() == [0, 0, 0] and len(paths) == 3
    assert pixels[:, 0].max() == 0  # a 14x9 cell is padded to a square with black, top and bottom


def test_a_folder_that_is_not_a_class_or_missing_is_refused(tmp_path):
    write_cell(tmp_path / "extra" / "Healthy" / "a.png", seed=0)
    with pytest.raises(UserError, match="Healthy"):
        extra_cells(tmp_path / "extra", ["Uninfected", "Parasitized"], size=16, crop=0, interpolation="bicubic")
    with pytest.raises(UserError, match="no folder"):
        extra_cells(tmp_path / "nowhere", ["Uninfected", "Parasitized"], size=16, crop=0, interpolation="bicubic")


def test_a_run_trains_on_the_extra_cells_and_keeps_the_split_its_own(tmp_path):
    slides = {f"C{n}": {"Parasitized": 4, "Uninfected": 4} for n in range(1, 11)}
    data = make_malaria_like(tmp_path / "nih", slides, learnable=True, size=(20, 20))
    for n in range(5):
        write_cell(tmp_path / "smears" / "Uninfected" / f"smear_{n}.png", seed=100 + n, size=(20, 20),
                   parasite=False)
    settings = {"dataset": "malaria-nih", "input_size": 16, "epochs": 1, "batch_size": 16, "val": 0.2,
                "test": 0.2}
    plain = train(load_config("default", settings), out=tmp_path / "plain", data=str(data), progress=False)
    extra = train(load_config("default", settings, [f"extra_train={tmp_path / 'smears'}"]), out=tmp_path / "extra",
                  data=str(data), progress=False)
    assert len(extra.data.subsets["train"]) == len(plain.data.subsets["train"]) + 5
    assert extra.data.subsets["train"].groups[-1] == "extra:smears"
    assert (extra.run / "split.csv").read_text() == (plain.run / "split.csv").read_text()
    meta = json.loads((extra.run / "model.json").read_text())
    assert meta["train"]["images"] == len(plain.data.subsets["train"]) + 5
    assert meta["train"]["config"]["extra_train"] == str(tmp_path / "smears")
