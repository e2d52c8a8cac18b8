"""Screening white cells with a leukemia model (``screen --cells white``): cutting as the training cells were
cut, telling a red-cell model from a white-cell one, the blast classes, and a run on tiny synthetic fields with
a tiny model trained here whose blasts are counted exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi

from cellscreen.errors import UserError
from cellscreen.screen import pipeline, white
from tests.screen.test_pipeline import BACKGROUND, FakeDetection, disc, read_csv

RED, BLAST, NORMAL = (225, 160, 160), (70, 20, 120), (200, 170, 215)  # a red cell; a blast; a normal white cell


class FoundCell:
    """What the pipeline reads of a found cell (as ``detect.FoundCell``)."""

    def __init__(self, cell_id, kind, box, area, touches_border, single):
        self.id, self.kind, self.box, self.area = cell_id, kind, box, area
        self.touches_border, self.single = touches_border, single
        self.centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)


def find_red_and_white(rgb, *, cell_diameter=None):
    """A stand-in cell finder: blobs off the background, those over twice the median area white cells."""
    stained = ndi.binary_opening(np.abs(rgb.astype(int) - BACKGROUND).max(axis=2) > 25, iterations=2)
    labels, count = ndi.label(stained)
    labels = labels.astype(np.int32)
    areas = np.bincount(labels.ravel())[1:]
    typical = float(np.median(areas)) if count else 1.0
    cells = []
    for cell_id, (y, x) in enumerate(ndi.find_objects(labels), start=1):
        touches = x.start == 0 or y.start == 0 or x.stop == rgb.shape[1] or y.stop == rgb.shape[0]
        kind = "white" if areas[cell_id - 1] > 2 * typical else "red"
        cells.append(FoundCell(cell_id, kind, (x.start, y.start, x.stop, y.stop), int(areas[cell_id - 1]), touches,
                               kind == "red"))
    red = [a for c, a in zip(cells, areas) if c.kind == "red"]
    return FakeDetection(labels, cells, cell_diameter or 2 * np.sqrt(float(np.median(red)) / np.pi))


def test_an_outlined_white_cell_is_centred_on_a_black_frame_at_the_training_cells_width():
    rgb = np.zeros((100, 140, 3), np.uint8) + np.array(BACKGROUND, np.uint8)
    yy, xx = np.mgrid[:100, :140]
    labels = ((yy - 40) ** 2 + (xx - 90) ** 2 <= 15**2).astype(np.int32)
    rgb[labels == 1] = BLAST
    cell = FoundCell(1, "white", (75, 25, 106, 56), int(labels.sum()), False, False)
    frame = white.cut_white_cell(rgb, labels, cell, white.TRAINING_WHITE_CELLS["cnmc"], red_diameter=10.0)
    assert frame.shape == (450, 450, 3)
    inside = frame.max(axis=2) > 0
    assert 2 * np.sqrt(inside.sum() / np.pi) == pytest.approx(215.74, rel=0.03)
    ys, xs = np.nonzero(inside)
    assert (ys.mean(), xs.mean()) == pytest.approx((224.5, 224.5), abs=3)
    assert np.abs(frame[inside].astype(int) - BLAST).max(axis=1).mean() < 8  # the cell's own colour, no background


def test_a_context_window_shows_the_field_at_the_training_images_red_cell_size():
    rgb = np.zeros((200, 300, 3), np.uint8) + np.array(BACKGROUND, np.uint8)
    rgb[90:110, 140:160] = BLAST  # a 20 px square "white cell" at (150, 100)
    rgb[:, 290:] = (0, 0, 255)  # a strip at the right edge
    cell = FoundCell(1, "white", (140, 90, 160, 110), 400, False, False)
    cut = white.TRAINING_WHITE_CELLS["taleqani"]
    frame = white.cut_white_cell(rgb, None, cell, cut, red_diameter=2 * cut.diameter)  # field shown at half size
    assert frame.shape == (224, 224, 3)
    dark = np.flatnonzero(np.abs(frame[:, 112].astype(int) - BLAST).max(axis=1) < 30)
    central = dark[(dark > 60) & (dark < 160)]  # the cell; its mirror images past the field's edges above, below
    assert len(dark) == pytest.approx(30, abs=4)
    assert len(central) == pytest.approx(10, abs=2) and central.mean() == pytest.approx(111.5, abs=2)
    # the window (448 field pixels, x -74..374) runs past the field: the field is mirrored there, so the 10 px
    # strip at its right edge (x 290..299) shows twice as wide (frame columns 182..191), the background after it
    blue = (frame[112, :, 2] > 200) & (frame[112, :, 0] < 60)
    assert np.flatnonzero(blue).tolist() == pytest.approx(list(range(182, 192)), abs=1)
    assert np.abs(frame[112, 196].astype(int) - BACKGROUND).max() <= 2
    assert np.abs(frame[2, 2].astype(int) - BACKGROUND).max() <= 2


def test_a_model_trained_on_the_other_kind_of_cell_is_refused_in_one_line():
    with pytest.raises(UserError, match="red-cell model") as refused:
        white.check_model_cells("malaria-nih", "white", "malaria")
    assert "\n" not in str(refused.value)
    with pytest.raises(UserError, match="--cells white"):
        white.check_model_cells("cnmc", "red", "runs/all")
    with pytest.raises(UserError, match="does not know"):
        white.check_model_cells(None, "white", "runs/own")
    assert white.check_model_cells(None, "red", "runs/own") is None
    assert white.check_model_cells("taleqani", "white", "runs/t").style == "context"


def test_blast_classes_come_from_the_user_the_positive_class_or_the_training_set():
    four = ("Benign", "Early", "Pre", "Pro")
    cut = white.TRAINING_WHITE_CELLS["taleqani"]
    assert white.blast_classes_for(four, None, cut) == ("Early", "Pre", "Pro")
    assert white.blast_classes_for(four, None, cut, ["Pre", " Pro"]) == ("Pre", "Pro")
    assert white.blast_classes_for(("ALL", "Benign"), "ALL", white.TRAINING_WHITE_CELLS["taleqani-binary"]) == ("ALL",)
    with pytest.raises(UserError, match="Blast.*choose from Benign, Early, Pre, Pro"):
        white.blast_classes_for(four, None, cut, ["Blast"])
    with pytest.raises(UserError, match="every class"):
        white.blast_classes_for(four, None, cut, list(four))


def write_training_cells(root: Path) -> Path:
    """A C-NMC-like folder: 450x450 frames, one disc centred on black, blasts dark violet, normal cells lilac;
    file names carry the subject as C-NMC's do."""
    rng = np.random.default_rng(0)
    for label, colour, prefix in (("all", BLAST, ""), ("hem", NORMAL, "H")):
        (root / label).mkdir(parents=True)
        for subject in range(1, 7):
            for k in range(4):
                frame = np.zeros((450, 450, 3), np.uint8)
                radius = int(rng.integers(95, 120))
                frame[225 - radius:225 + radius + 1, 225 - radius:225 + radius + 1] = disc(radius, colour)
                noise = rng.integers(-6, 7, frame.shape)
                frame = np.where(frame > 0, np.clip(frame + noise, 1, 255), 0).astype(np.uint8)
                Image.fromarray(frame).save(root / label / f"UID_{prefix}{subject}_{k}_1_{label}.png")
    return root


@pytest.fixture(scope="module")
def leukemia_run(tmp_path_factory) -> Path:
    """A tiny model trained on the C-NMC-like cells (dark violet: blast)."""
    from cellscreen.config import load_config  # trains a model: only this fixture needs PyTorch
    from cellscreen.engine.train import train

    root = write_training_cells(tmp_path_factory.mktemp("cnmc-like"))
    config = load_config("default", {"dataset": "cnmc", "model": "compact_cnn", "input_size": 16, "epochs": 4,
                                     "batch_size": 8, "lr": 0.01, "val": 0.17, "test": 0.17})
    return train(config, out=tmp_path_factory.mktemp("run") / "run", data=str(root), progress=False).run


def write_white_field(path: Path, seed: int, blasts: int, normal: int, red: int = 8) -> Path:
    from cellscreen.screen.synthetic import make_field  # places cells apart, off the border

    cells = [disc(6, RED)] * red + [disc(12, BLAST)] * blasts + [disc(12, NORMAL)] * normal
    background = np.zeros((110, 150, 3), np.uint8) + np.array(BACKGROUND, np.uint8)
    field = make_field(cells, ["c"] * len(cells), [False] * len(cells), background, seed=seed, gap=0.2)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(field.image).save(path)
    return path


def test_white_cells_are_screened_and_their_blasts_counted_exactly(leukemia_run, monkeypatch, tmp_path):
    monkeypatch.setattr(pipeline, "find_cells", find_red_and_white)
    inputs = tmp_path / "fields"
    write_white_field(inputs / "patient1" / "a.png", 1, blasts=2, normal=1)
    write_white_field(inputs / "patient1" / "b.png", 2, blasts=0, normal=2)
    write_white_field(inputs / "patient2" / "a.png", 3, blasts=1, normal=0)
    out = tmp_path / "out"
    totals = pipeline.screen(leukemia_run, [inputs], out, workers=0, progress=False, cells="white")
    assert (totals["white_counted"], totals["blasts"], totals["positive"]) == (6, 3, 0)
    images = {Path(r["image"]).parent.name + "/" + Path(r["image"]).name: r for r in read_csv(out / "images.csv")}
    assert [(images[k]["white_counted"], images[k]["blasts"]) for k in ("patient1/a.png", "patient1/b.png",
                                                                        "patient2/a.png")] == [("3", "2"), ("2", "0"),
                                                                                               ("1", "1")]
    assert images["patient1/a.png"]["parasitemia_percent"] == "" and images["patient1/a.png"]["red_counted"] == "8"
    samples = {Path(r["sample"]).name: r for r in read_csv(out / "samples.csv")}
    first = samples["patient1"]
    assert (first["white_counted"], first["blasts"], first["blast_percent"]) == ("5", "2", "40.000")
    assert (float(first["blast_ci_low"]), float(first["blast_ci_high"])) == pytest.approx((11.762, 76.928), abs=1e-3)
    assert "only 5 white cells counted" in first["warnings"] and "red cells counted" not in first["warnings"]
    cells = read_csv(out / "cells.csv")
    whites = [c for c in cells if c["kind"] == "white"]
    assert len(whites) == 6 and all(c["counted"] == "1" and c["class"] in ("all", "hem") for c in whites)
    assert sum(c["class"] == "all" for c in whites) == 3
    assert all(c["class"] == "" and c["counted"] == "0" for c in cells if c["kind"] == "red")
    record = json.loads((out / "screen.json").read_text())
    assert record["cells"] == "white" and record["blast_classes"] == ["all"] and record["white_cut"]["frame"] == 450
    report = (out / "report.html").read_text()
    assert "blast share (95% interval)" in report and "40.00% (11.76&ndash;76.93)" in report
    assert "centred on a black 450 px frame" in report


def test_a_white_cell_run_resumes_and_refuses_other_settings(leukemia_run, monkeypatch, tmp_path):
    monkeypatch.setattr(pipeline, "find_cells", find_red_and_white)
    inputs = tmp_path / "fields"
    for k in range(3):
        write_white_field(inputs / f"f{k}.png", k, blasts=k % 2, normal=1)
    pipeline.screen(leukemia_run, [inputs], tmp_path / "whole", workers=0, progress=False, cells="white")
    real, calls = pipeline.screen_field, []

    def crash_on_the_second(*args):
        calls.append(args[0].name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(pipeline, "screen_field", crash_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        pipeline.screen(leukemia_run, [inputs], tmp_path / "out", workers=0, progress=False, cells="white")
    monkeypatch.setattr(pipeline, "screen_field", real)
    with pytest.raises(UserError, match="blast_classes"):
        pipeline.screen(leukemia_run, [inputs], tmp_path / "out", workers=0, progress=False, cells="white",
                        blast_classes=["hem"], resume=True)
    pipeline.screen(leukemia_run, [inputs], tmp_path / "out", workers=0, progress=False, cells="white", resume=True)
    for name in ("cells.csv", "images.csv", "samples.csv"):
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()


def test_white_cell_shards_merge_into_the_whole_run(leukemia_run, monkeypatch, tmp_path):
    from cellscreen.screen.shards import merge_screens  # joins shard folders

    monkeypatch.setattr(pipeline, "find_cells", find_red_and_white)
    inputs = tmp_path / "fields"
    for k in range(4):
        write_white_field(inputs / f"f{k}.png", k + 10, blasts=k % 2, normal=1)
    pipeline.screen(leukemia_run, [inputs], tmp_path / "whole", workers=0, progress=False, cells="white")
    parts = [tmp_path / f"part{i}" for i in range(2)]
    for i, part in enumerate(parts):
        pipeline.screen(leukemia_run, [inputs], part, workers=0, progress=False, cells="white", shard=(i, 2))
    red = tmp_path / "red-part"
    pipeline.screen("malaria", [inputs], red, workers=0, progress=False, shard=(1, 2))
    with pytest.raises(UserError, match="differs"):
        merge_screens([parts[0], red], tmp_path / "mixed")
    totals = merge_screens(parts, tmp_path / "merged")
    assert totals["blasts"] == 2 and totals["white_counted"] == 6
    assert (tmp_path / "merged" / "samples.csv").read_bytes() == (tmp_path / "whole" / "samples.csv").read_bytes()
    assert "blast share" in (tmp_path / "merged" / "report.html").read_text()


def test_white_cells_are_cut_at_the_red_cell_size_given_or_measured(leukemia_run, monkeypatch, tmp_path):
    monkeypatch.setattr(pipeline, "find_cells", find_red_and_white)
    field = write_white_field(tmp_path / "fields" / "f.png", 4, blasts=1, normal=1)
    seen, real = [], white.cut_white_cells
    monkeypatch.setattr(white, "cut_white_cells", lambda *args: seen.append(args[4]) or real(*args))
    pipeline.screen(leukemia_run, [field], tmp_path / "given", workers=0, progress=False, cells="white",
                    cell_diameter=40.0)
    pipeline.screen(leukemia_run, [field], tmp_path / "measured", workers=0, progress=False, cells="white")
    assert seen[0] == pytest.approx(40.0)
    assert seen[1] == pytest.approx(float(read_csv(tmp_path / "measured" / "images.csv")[0]["cell_diameter_px"]),
                                    abs=0.01)


def test_red_and_white_models_are_refused_for_the_other_kind_of_cell(leukemia_run, tmp_path):
    field = write_white_field(tmp_path / "f.png", 0, blasts=1, normal=1)
    with pytest.raises(UserError, match="leukemia model"):
        pipeline.screen(leukemia_run, [field], tmp_path / "a", workers=0, progress=False)
    with pytest.raises(UserError, match="red-cell model"):
        pipeline.screen("malaria", [field], tmp_path / "b", workers=0, progress=False, cells="white")
    with pytest.raises(UserError, match="--blast-classes goes with --cells white"):
        pipeline.screen("malaria", [field], tmp_path / "c", workers=0, progress=False, blast_classes=["x"])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
