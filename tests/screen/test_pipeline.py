"""The screening pipeline end to end: every input accounted for, files that agree, resumption, refusals;
and, on real NIH cells placed on a real smear's background, exact counts and parasitemia and a report that
renders in Chromium."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi

from cellscreen.errors import UserError
from cellscreen.screen import pipeline
from cellscreen.screen.synthetic import make_field
from tests.browser import CHROMIUM, NO_CHROMIUM, open_report
from tests.screen.runs import disc, outputs, read_csv

BACKGROUND = (205, 200, 195)


class FakeCell:
    """What the pipeline reads of a found cell (as ``detect.FoundCell``)."""

    def __init__(self, cell_id, box, area, touches_border, single=True):
        self.id, self.kind, self.box, self.area = cell_id, "red", box, area
        self.touches_border, self.single = touches_border, single
        self.centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)


class FakeDetection:
    def __init__(self, labels, cells, cell_diameter):
        self.labels, self.cells, self.cell_diameter = labels, cells, cell_diameter


def find_discs(rgb, *, cell_diameter=None):
    """A stand-in cell finder for the fast tests: every blob off the background is a red cell, a blob twice
    the median area is not single."""
    stained = ndi.binary_opening(np.abs(rgb.astype(int) - BACKGROUND).max(axis=2) > 25, iterations=2)
    labels, count = ndi.label(stained)  # the opening drops a JPEG's ringing
    labels = labels.astype(np.int32)
    areas = np.bincount(labels.ravel())[1:]
    typical = float(np.median(areas)) if count else 1.0
    cells = []
    for cell_id, where in enumerate(ndi.find_objects(labels), start=1):
        y, x = where
        box = (x.start, y.start, x.stop, y.stop)
        touches = x.start == 0 or y.start == 0 or x.stop == rgb.shape[1] or y.stop == rgb.shape[0]
        cells.append(FakeCell(cell_id, box, int(areas[cell_id - 1]), touches, areas[cell_id - 1] < 1.7 * typical))
    return FakeDetection(labels, cells, cell_diameter or 2 * np.sqrt(typical / np.pi))


def write_field(path: Path, seed: int, cells: int = 6) -> Path:
    background = np.zeros((90, 120, 3), np.uint8) + np.array(BACKGROUND, np.uint8)
    colours = [(225, 160, 160), (150, 60, 170)]
    field = make_field([disc(8, colours[k % 2]) for k in range(cells)], ["c"] * cells, [False] * cells, background,
                       seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(field.image).save(path)
    return path


@pytest.fixture
def fields(tmp_path) -> Path:
    """Two slides of tiny fields, a damaged image and a file that is no image."""
    root = tmp_path / "fields"
    for k in range(3):
        write_field(root / "slide1" / f"f{k}.png", seed=k)
    write_field(root / "slide2" / "f0.png", seed=7, cells=4)
    write_field(root / "slide2" / "f1.jpg", seed=8, cells=5)
    (root / "slide2" / "damaged.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (root / "slide2" / "notes.txt").write_text("focus was poor")
    return root


@pytest.fixture
def fake_finder(monkeypatch):
    monkeypatch.setattr(pipeline, "find_cells", find_discs)


def test_every_input_has_a_row_and_the_files_agree(fields, fake_finder, tmp_path):
    out = tmp_path / "out"
    totals = pipeline.screen("malaria", [fields], out, workers=0, progress=False)
    images = read_csv(out / "images.csv")
    assert len(images) == 7  # five fields, a damaged image, a text file
    status = {Path(r["image"]).name: r["status"] for r in images}
    assert status["damaged.png"].startswith("skipped: ") and "not an image file type" in status["notes.txt"]
    cells = read_csv(out / "cells.csv")
    ok = [r for r in images if r["status"] == "ok"]
    assert [int(r["red_counted"]) for r in ok] == [6, 6, 6, 4, 5]
    for row in ok:
        mine = [c for c in cells if c["image"] == row["image"]]
        assert len(mine) == int(row["cells"])
        assert sum(c["counted"] == "1" for c in mine) == int(row["red_counted"])
        assert sum(c["class"] == "Parasitized" and c["counted"] == "1" for c in mine) == int(row["positive"])
        assert all(float(c["p_Uninfected"]) + float(c["p_Parasitized"]) == pytest.approx(1, abs=2e-4) for c in mine)
        assert all(len(c["p_Parasitized"].split(".")[1]) == 4 for c in mine)
        with Image.open(out / row["overlay"]) as picture:
            assert picture.size == (120, 90)
    samples = {r["sample"]: r for r in read_csv(out / "samples.csv")}
    assert set(samples) == {str(fields / "slide1"), str(fields / "slide2")}
    slide2 = samples[str(fields / "slide2")]
    assert (slide2["images"], slide2["skipped"], slide2["red_counted"]) == ("2", "2", "9")
    assert "only 9 red cells counted" in slide2["warnings"] and "2 images could not be read" in slide2["warnings"]
    positive = sum(int(r["positive"]) for r in ok)
    assert totals == {"images": 5, "skipped": 2, "resumed": 0, "samples": 2, "red_counted": 27,
                      "positive": positive, "flagged": 0, "white": 0, "white_counted": 0, "blasts": 0}
    record = json.loads((out / "screen.json").read_text())
    assert record["images"] == 5 and record["model_name"] == "compact_cnn6sc"
    report = (out / "report.html").read_text()
    assert "slide2" in report and "could not be read" in report and "validated on" in report
    assert not list(out.glob("*.partial*"))


def test_a_finished_run_is_not_overwritten_unless_asked(fields, fake_finder, tmp_path):
    out = tmp_path / "out"
    pipeline.screen("malaria", [fields / "slide1"], out, workers=0, progress=False)
    with pytest.raises(UserError) as refused:
        pipeline.screen("malaria", [fields / "slide1"], out, workers=0, progress=False)
    assert "overwrite" in str(refused.value) and "\n" not in str(refused.value)
    (out / "overlays" / "000009_old.png").write_bytes(b"from an older run")
    pipeline.screen("malaria", [fields / "slide2"], out, workers=0, progress=False, overwrite=True)
    assert len(read_csv(out / "images.csv")) == 4
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["000001_f0.png", "000002_f1.png"]


def test_a_resumed_run_skips_the_finished_fields_and_ends_as_an_uninterrupted_one(fields, fake_finder, tmp_path,
                                                                                  monkeypatch):
    pipeline.screen("malaria", [fields], tmp_path / "whole", workers=0, progress=False)
    real, calls = pipeline.screen_field, []

    def crash_on_the_fourth(*args):
        calls.append(args[0].name)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(pipeline, "screen_field", crash_on_the_fourth)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        pipeline.screen("malaria", [fields], out, workers=0, progress=False)
    assert len(read_csv(out / "images.partial.csv")) == 3
    with (out / "cells.partial.csv").open("a") as journal:  # the crash came while the next field's cells were written
        journal.write(f"{fields / 'slide2' / 'damaged.png'},1,red,3.0,4.0,1,2,3,4,9,1,0,1,Uninfected,0.9,0.1\n")
        journal.write(f"{fields / 'slide2' / 'f0.png'},2,red,3.0,4")
    with pytest.raises(UserError, match="--resume"):
        pipeline.screen("malaria", [fields], out, workers=0, progress=False)
    with pytest.raises(UserError, match="cell_diameter"):
        pipeline.screen("malaria", [fields], out, workers=0, progress=False, resume=True, cell_diameter=20.0)
    calls.clear()
    totals = pipeline.screen("malaria", [fields], out, workers=0, progress=False, resume=True)
    assert calls == ["damaged.png", "f0.png", "f1.jpg"]  # the rest, from where it stopped (a text file is not read)
    assert totals["resumed"] == 3
    assert outputs(out) == outputs(tmp_path / "whole")


def test_a_resumed_run_refuses_changed_inputs(fields, fake_finder, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "screen_field", lambda *args: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        pipeline.screen("malaria", [fields], tmp_path / "out", workers=0, progress=False)
    with pytest.raises(UserError, match="inputs"):
        pipeline.screen("malaria", [fields / "slide1"], tmp_path / "out", workers=0, progress=False, resume=True)


def test_samples_by_a_pattern_in_the_file_name(tmp_path, fake_finder):
    root = tmp_path / "flat"
    for name in ("P1_a.png", "P1_b.png", "P2_a.png"):
        write_field(root / name, seed=len(name) + ord(name[1]) + ord(name[3]))
    pipeline.screen("malaria", [root], tmp_path / "out", workers=0, progress=False, group_regex=r"^(P\d+)_")
    samples = read_csv(tmp_path / "out" / "samples.csv")
    assert [(r["sample"], r["images"], r["red_counted"]) for r in samples] == [("P1", "2", "12"), ("P2", "1", "6")]


def test_no_input_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no input files"):
        pipeline.screen("malaria", [tmp_path / "empty"], tmp_path / "out", workers=0, progress=False)


def confident_cells(predictor, folder: Path, slide: str, count: int) -> list[Path]:
    """Regular NIH cells of one slide that the model classifies correctly with a probability of 0.95 or more."""
    from cellscreen.screen.synthetic import confident_cells, regular_cells

    chosen = confident_cells(predictor, regular_cells(folder, count=2 * count, seed=5, slide=slide, min_solidity=0.93),
                             folder.name)[:count]
    assert len(chosen) == count
    return chosen


@pytest.mark.real_data
def test_fields_of_real_nih_cells_are_counted_exactly_and_reported(real_data, tmp_path):
    from cellscreen.data.images import load_rgb
    from cellscreen.screen.synthetic import smear_background
    from cellscreen.serve.runtime import load_predictor

    predictor = load_predictor("malaria")
    cells = real_data / "malaria-nih" / "cell_images"
    smear = load_rgb(next((real_data / "smears" / "txl-pbc" / "TXL_PBC" / "images" / "train").glob("345b81c1-e33*")))
    # (slide, uninfected, parasitized, scale of the cells, field size): cells half and a third of the NIH size
    plan = {"A": ("C39", 18, 6, 0.5, (600, 800)), "B": ("C137", 20, 10, 0.35, (480, 640))}
    truth = {}
    for name, (slide, n_neg, n_pos, scale, size) in plan.items():
        paths = (confident_cells(predictor, cells / "Uninfected", slide, n_neg)
                 + confident_cells(predictor, cells / "Parasitized", slide, n_pos))
        field = make_field([load_rgb(p) for p in paths], ["Uninfected"] * n_neg + ["Parasitized"] * n_pos,
                           [False] * n_neg + [True] * n_pos, smear_background(smear, size, seed=len(truth)),
                           scale=scale, seed=len(truth))
        image = tmp_path / "in" / f"slide{name}" / f"field{name}.png"
        image.parent.mkdir(parents=True)
        Image.fromarray(field.image).save(image)
        truth[str(image)] = field
    out = tmp_path / "out"
    pipeline.screen(predictor, [tmp_path / "in"], out, workers=2, progress=False)

    images = {r["image"]: r for r in read_csv(out / "images.csv")}
    cells_found = read_csv(out / "cells.csv")
    for image, field in truth.items():
        row = images[image]
        assert (int(row["red_counted"]), int(row["positive"]), int(row["flagged"]), int(row["white"])) == (
            len(field.cells), field.positive, 0, 0)
        assert float(row["parasitemia_percent"]) == pytest.approx(field.parasitemia, abs=5e-4)
        found = [c for c in cells_found if c["image"] == image]
        for placed in field.cells:  # each placed cell found once, where it was put, with its class
            near = [c for c in found if np.hypot(float(c["centre_x"]) - placed.centre[0],
                                                 float(c["centre_y"]) - placed.centre[1]) < 0.25 * field.cell_diameter]
            assert len(near) == 1 and near[0]["class"] == placed.label
    samples = read_csv(out / "samples.csv")
    assert [(r["red_counted"], r["positive"]) for r in samples] == [("24", "6"), ("30", "10")]

    if CHROMIUM is None:
        pytest.skip(f"{NO_CHROMIUM} for the report check")
    seen = open_report(out / "report.html", "#samples tr")
    shown, rows, printed = seen["images"], seen["rows"], seen["pdf"]
    assert len(shown) == 2 and all(complete and width > 100 for _, complete, width in shown), shown
    assert len(rows) == 3 and "slideA" in rows[1] and "25.00%" in rows[1] and "33.33%" in rows[2]
    assert printed.startswith(b"%PDF") and len(printed) > 20_000


def test_worker_processes_write_what_one_process_writes(fields, tmp_path):
    pipeline.screen("malaria", [fields / "slide1"], tmp_path / "here", workers=0, progress=False)
    pipeline.screen("malaria", [fields / "slide1"], tmp_path / "workers", workers=2, progress=False)
    assert outputs(tmp_path / "workers") == outputs(tmp_path / "here")
    assert sum(int(r["red_counted"]) for r in read_csv(tmp_path / "here" / "images.csv")) > 0


def test_tiff_and_bmp_fields_are_screened_as_png(tmp_path, fake_finder):
    png = write_field(tmp_path / "in" / "a.png", seed=4)
    with Image.open(png) as picture:
        picture.save(tmp_path / "in" / "b.bmp")
        picture.save(tmp_path / "in" / "c.tif")
    pipeline.screen("malaria", [tmp_path / "in"], tmp_path / "out", workers=0, progress=False)
    rows = read_csv(tmp_path / "out" / "images.csv")
    assert [r["status"] for r in rows] == ["ok"] * 3
    assert len({(r["red_counted"], r["positive"], r["parasitemia_percent"]) for r in rows}) == 1


def test_a_given_cell_size_is_what_the_cells_are_found_and_cut_at(fields, tmp_path, monkeypatch):
    from cellscreen.screen.cut import RED_CELL_MICRONS, TRAINING_CELL_DIAMETER

    asked = []
    monkeypatch.setattr(pipeline, "find_cells", lambda rgb, cell_diameter=None: asked.append(cell_diameter)
                        or find_discs(rgb, cell_diameter=cell_diameter))
    pipeline.screen("malaria", [fields / "slide1" / "f0.png"], tmp_path / "um", workers=0, progress=False,
                    microns_per_pixel=0.5)
    pipeline.screen("malaria", [fields / "slide1" / "f0.png"], tmp_path / "px", workers=0, progress=False,
                    cell_diameter=20.0)
    assert asked == [pytest.approx(RED_CELL_MICRONS / 0.5), 20.0]
    scales = [float(read_csv(tmp_path / name / "images.csv")[0]["scale"]) for name in ("um", "px")]
    assert scales == [pytest.approx(TRAINING_CELL_DIAMETER / 15, abs=1e-4), pytest.approx(TRAINING_CELL_DIAMETER / 20,
                                                                                           abs=1e-4)]
    with pytest.raises(UserError, match="not both"):
        pipeline.screen("malaria", [fields], tmp_path / "both", cell_diameter=20.0, microns_per_pixel=0.5)
