"""``cellscreen screen`` and ``cellscreen cells score`` through ``cellscreen.cli.main``: the files, the printed
summary, one-line refusals with exit status 2, shards that split the inputs and merge back, and scoring of
cell finding on drawn and real labelled fields."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cellscreen.screen.synthetic import make_field
from tests.clitools import run_here
from tests.screen.test_detect import drawn_field
from tests.screen.test_pipeline import fake_finder, fields, find_discs, read_csv, write_field  # noqa: F401 (fixtures)

SUMMARY = re.compile(r"^(?P<sample>.+): (?P<images>\d+) image\(s\)(, (?P<skipped>\d+) skipped)?, "
                     r"(?P<red>[\d,]+) red cells counted, (?P<positive>[\d,]+) positive, parasitemia "
                     r"(?P<percent>[\d.]+)% \(95% CI [\d.]+-[\d.]+\), (?P<flagged>[\d,]+) flagged, (?P<white>[\d,]+) white")


def summary_lines(stdout: str) -> dict[str, re.Match]:
    found = {}
    for line in stdout.splitlines():
        match = SUMMARY.match(line)
        if match:
            found[match["sample"]] = match
    return found


def test_screen_writes_the_run_and_prints_a_line_per_sample(fields, fake_finder, tmp_path):
    out = tmp_path / "out"
    done = run_here("screen", "malaria", str(fields), "--out", str(out), "--workers", "0", "-q")
    assert done.returncode == 0, done.stderr
    assert {p.name for p in out.iterdir()} == {"cells.csv", "images.csv", "samples.csv", "report.html",
                                               "screen.json", "overlays"}
    assert len(list((out / "overlays").glob("*.png"))) == 5
    lines = summary_lines(done.stdout)
    samples = {row["sample"]: row for row in read_csv(out / "samples.csv")}
    assert set(lines) == set(samples) == {str(fields / "slide1"), str(fields / "slide2")}
    for name, row in samples.items():
        assert (lines[name]["red"], lines[name]["positive"], lines[name]["white"]) == (
            row["red_counted"], row["positive"], row["white"])
        assert float(lines[name]["percent"]) == pytest.approx(float(row["parasitemia_percent"]), abs=0.005)
    assert lines[str(fields / "slide2")]["skipped"] == "2"  # the damaged image and the text file
    assert done.stdout.splitlines()[-1] == (f"screened 5 image(s), skipped 2 (reasons in images.csv): report "
                                            f"{out / 'report.html'}")


def one_line_refusal(done, *words: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("cellscreen: error: "), done.stderr
    for word in words:
        assert word in done.stderr, done.stderr


def test_bad_inputs_are_refused_in_one_line(fields, fake_finder, tmp_path):
    out = str(tmp_path / "out")
    one_line_refusal(run_here("screen", "malaria", str(tmp_path / "nowhere"), "--out", out, "-q"),
                     "nowhere", "no such file or folder")
    one_line_refusal(run_here("screen", "malaria", str(fields / "slide2" / "notes.txt"), "--out", out, "-q"),
                     "notes.txt", "not an image file type")
    one_line_refusal(run_here("screen", "malaria", "--out", out, "-q"), "MODEL", "INPUT")
    one_line_refusal(run_here("screen", "malaria", str(fields), "--out", out, "--shard", "2/2", "-q"), "--shard")
    one_line_refusal(run_here("screen", "malaria", str(fields), "--out", out, "--cell-diameter", "-3", "-q"))
    assert not Path(out).exists()  # nothing was begun
    assert run_here("screen", "malaria", str(fields / "slide1"), "--out", out, "--workers", "0", "-q").returncode == 0
    one_line_refusal(run_here("screen", "malaria", str(fields / "slide1"), "--out", out, "-q"), "--overwrite")
    again = run_here("screen", "malaria", str(fields / "slide1"), "--out", out, "--workers", "0", "--overwrite", "-q")
    assert again.returncode == 0, again.stderr
    one_line_refusal(run_here("screen", "--merge", out, "--out", str(tmp_path / "m"), "-q"), "not screened with --shard")


def test_shards_split_the_inputs_without_overlap_or_loss_and_merge_to_the_whole_run(fields, fake_finder, tmp_path):
    whole = tmp_path / "whole"
    assert run_here("screen", "malaria", str(fields), "--out", str(whole), "--workers", "0", "-q").returncode == 0
    parts = []
    for i in range(3):
        part = tmp_path / f"part{i}"
        done = run_here("screen", "malaria", str(fields), "--out", str(part), "--shard", f"{i}/3", "--workers", "0",
                        "-q")
        assert done.returncode == 0, done.stderr  # a shard the hash gives no file is an empty part
        parts.append(part)
    shard_images = [r["image"] for part in parts for r in read_csv(part / "images.csv")]
    assert len(shard_images) == len(set(shard_images))  # no input in two shards
    assert sorted(shard_images) == sorted(r["image"] for r in read_csv(whole / "images.csv"))  # and none lost
    assert len(parts) >= 2

    merged = tmp_path / "merged"
    one_line_refusal(run_here("screen", "--merge", *map(str, parts[:-1]), "--out", str(merged), "-q"), "missing")
    one_line_refusal(run_here("screen", "--merge", *map(str, parts), str(parts[0]), "--out", str(merged), "-q"),
                     "repeated")
    one_line_refusal(run_here("screen", "--merge", *map(str, parts), "--out", str(merged), "-q", str(fields)),
                     "no MODEL or INPUT")
    done = run_here("screen", "--merge", *map(str, parts), "--out", str(merged), "-q")
    assert done.returncode == 0, done.stderr
    assert (merged / "samples.csv").read_bytes() == (whole / "samples.csv").read_bytes()
    key = lambda rows: sorted(tuple(sorted(r.items())) for r in rows)  # noqa: E731
    assert key(read_csv(merged / "images.csv")) == key(read_csv(whole / "images.csv"))
    assert key(read_csv(merged / "cells.csv")) == key(read_csv(whole / "cells.csv"))
    assert sorted(p.read_bytes() for p in (merged / "overlays").iterdir()) == sorted(
        p.read_bytes() for p in (whole / "overlays").iterdir())
    assert summary_lines(done.stdout).keys() == {str(fields / "slide1"), str(fields / "slide2")}
    assert "report.html" in done.stdout.splitlines()[-1]
    one_line_refusal(run_here("screen", "--merge", *map(str, parts), "--out", str(merged), "-q"), "--overwrite")


def test_a_field_of_real_nih_cells_is_screened_and_counted_exactly(real_data, tmp_path):
    from cellscreen.data.images import load_rgb
    from cellscreen.screen.synthetic import confident_cells, regular_cells, smear_background
    from cellscreen.serve.runtime import load_predictor

    predictor = load_predictor("malaria")
    cells = real_data / "malaria-nih" / "cell_images"
    chosen = {label: confident_cells(predictor, regular_cells(cells / label, count=2 * n, seed=3, slide="C39",
                                                              min_solidity=0.93), label)[:n]
              for label, n in (("Uninfected", 12), ("Parasitized", 4))}
    assert [len(v) for v in chosen.values()] == [12, 4]
    smear = load_rgb(next((real_data / "smears" / "txl-pbc" / "TXL_PBC" / "images" / "train").glob("345b81c1-e33*")))
    paths = chosen["Uninfected"] + chosen["Parasitized"]
    field = make_field([load_rgb(p) for p in paths], ["Uninfected"] * 12 + ["Parasitized"] * 4,
                       [False] * 12 + [True] * 4, smear_background(smear, (480, 640), seed=1), scale=0.45, seed=1)
    image = tmp_path / "in" / "slideA" / "field.png"
    image.parent.mkdir(parents=True)
    Image.fromarray(field.image).save(image)

    out = tmp_path / "out"
    done = run_here("screen", "malaria", str(tmp_path / "in"), "--out", str(out), "--workers", "0", "-q")
    assert done.returncode == 0, done.stderr
    line = summary_lines(done.stdout)[str(image.parent)]
    assert (line["red"], line["positive"], line["flagged"], line["white"]) == ("16", "4", "0", "0")
    assert line["percent"] == "25.00"
    row = read_csv(out / "images.csv")[0]
    assert (row["status"], row["red_counted"], row["positive"]) == ("ok", "16", "4")
    assert "only 16 red cells counted" in done.stdout  # the sample's warning is on its line


def write_drawn_field(folder: Path, fmt: str) -> tuple[Path, Path]:
    """The drawn test field (8 red cells inside, a white cell, a platelet, a cell cut by the border) with its
    labels in ``fmt``, the cell cut by the border left unlabelled."""
    picture, truth = drawn_field()
    images, labels = folder / "images", folder / "labels"
    images.mkdir(parents=True)
    labels.mkdir()
    Image.fromarray(picture).save(images / "field1.png")
    height, width = picture.shape[:2]
    if fmt == "chula":
        text = "".join(f"{x:.0f} {y:.0f} 0\n" for x, y in truth["red"])
    else:
        boxes = [(1, x, y, 15) for x, y in truth["red"]] + [(0, *truth["white"][0], 21)]
        text = "".join(f"{k} {x / width:.5f} {y / height:.5f} {2 * r / width:.5f} {2 * r / height:.5f}\n"
                       for k, x, y, r in boxes)
    (labels / "field1.txt").write_text(text)
    return images, labels


@pytest.mark.parametrize("fmt", ["chula", "yolo"])
def test_cells_score_on_a_drawn_labelled_field(fmt, tmp_path):
    images, labels = write_drawn_field(tmp_path / "set", fmt)
    (images / "unlabelled.png").write_bytes((images / "field1.png").read_bytes())
    out = tmp_path / "scores.csv"
    done = run_here("cells", "score", str(images), "--labels", str(labels), "--format", fmt, "--border", "drop",
                    "--out", str(out), "-q")
    assert done.returncode == 0, done.stderr
    assert "1 field(s)" in done.stdout and "1 without labels left out" in done.stdout
    assert re.search(r"^red cells: precision 1\.000 .* recall 1\.000 .* F1 1\.000 .*median \|count error\| 0\.0%",
                     done.stdout, re.M), done.stdout
    rows = read_csv(out)
    assert [(r["kind"], r["labelled"], r["found"], r["hits"], r["left_out"]) for r in rows][0] == (
        "red", "8", "8", "8", "1")  # the cell cut by the border is left out
    if fmt == "yolo":
        assert re.search(r"^white cells: precision 1\.000 .* F1 1\.000", done.stdout, re.M), done.stdout
        assert rows[1]["kind"] == "white" and rows[1]["hits"] == "1"
    one_line_refusal(run_here("cells", "score", str(images), "--labels", str(labels), "--format", fmt,
                              "--out", str(out), "-q"), "--overwrite")


def test_cells_score_refuses_what_it_cannot_score(tmp_path):
    images, labels = write_drawn_field(tmp_path / "set", "chula")
    out = str(tmp_path / "s.csv")
    one_line_refusal(run_here("cells", "score", str(images), "--out", out, "-q"), "--labels", "--dataset")
    one_line_refusal(run_here("cells", "score", str(images), "--labels", str(tmp_path), "--format", "chula",
                              "--out", out, "-q"), "no field image")
    one_line_refusal(run_here("cells", "score", str(images), "--labels", str(labels), "--format", "yolo",
                              "--out", out, "-q"), "cannot be read as yolo")
    one_line_refusal(run_here("cells", "score", "--dataset", "chula-rbc12", "--data", str(tmp_path / "none"),
                              "--out", out, "-q"), "cellscreen data fetch chula-rbc12")
    one_line_refusal(run_here("data", "info", "--dataset", "chula-rbc12", "-q"), "smear fields", "cells score")


@pytest.mark.real_data
def test_cells_score_on_three_chula_fields(real_data, tmp_path):
    out = tmp_path / "chula.csv"
    done = run_here("cells", "score", "--dataset", "chula-rbc12", "--data", str(real_data), "--limit", "3",
                    "--out", str(out), "-q")
    assert done.returncode == 0, done.stderr
    rows = read_csv(out)
    assert [Path(r["image"]).name for r in rows] == ["1.jpg", "4.jpg", "6.jpg"]  # by number, not as text
    hits, found, labelled = (sum(int(r[k]) for r in rows) for k in ("hits", "found", "labelled"))
    label_lines = [(real_data / "smears" / "chula-rbc12" / "Label" / f"{n}.txt").read_text().splitlines()
                   for n in (1, 4, 6)]
    assert labelled == sum(1 for lines in label_lines for line in lines if line.split())
    assert [r["complete"] for r in rows] == ["1", "1", "1"]  # fields whose every cell is labelled
    line = re.search(r"^red cells \(3 whole fields\): precision (\S+) \[(\S+), (\S+)\]  recall (\S+) .* F1 (\S+) .*"
                     r"\((\S+) hits, (\S+) found, (\S+) labelled", done.stdout, re.M)
    assert line, done.stdout
    assert (int(line[6].replace(",", "")), int(line[7].replace(",", "")), int(line[8].replace(",", ""))) == (
        hits, found, labelled)
    assert float(line[1]) == pytest.approx(hits / found, abs=6e-4) and float(line[5]) == pytest.approx(
        2 * hits / (found + labelled), abs=6e-4)
    assert float(line[2]) <= float(line[1]) <= float(line[3])
    assert hits / labelled > 0.7  # the finder finds most labelled cells on fields it was tuned on
    assert "border rule spare" in done.stdout
    np.testing.assert_allclose([float(r["max_distance_px"]) for r in rows], float(rows[0]["max_distance_px"]))


def test_precision_is_scored_on_the_fields_labelled_whole_and_recall_on_all(tmp_path):
    from cellscreen.screen.finding import score_finding

    images, labels = write_drawn_field(tmp_path / "set", "chula")
    (images / "field1.png").rename(images / "1.png")
    (labels / "field1.txt").rename(labels / "1.txt")
    (images / "2.png").write_bytes((images / "1.png").read_bytes())
    (labels / "2.txt").write_text("".join((labels / "1.txt").read_text().splitlines(keepends=True)[:2]))  # in part
    result = score_finding(images, labels, label_format="chula", border="drop", complete=("1",),
                           rows_out=tmp_path / "rows.csv", progress=False)
    assert (result.fields, result.complete_fields) == (2, 1)
    red = result.scores["red"]
    assert (red.images, red.hits, red.found, red.labelled) == (1, 8, 8, 8)
    assert red.precision.value == 1.0
    assert result.recall_all["red"].value == 1.0  # the two labelled cells of the field labelled in part are found
    rows = read_csv(tmp_path / "rows.csv")
    assert [(r["image"][-5:], r["complete"], r["precision"]) for r in rows] == [
        ("1.png", "1", "1.0000"), ("2.png", "0", "0.2500")]


def test_screen_finds_a_known_set_of_fields_under_the_data_root(fake_finder, tmp_path):
    write_field(tmp_path / "data" / "smears" / "chula-rbc12" / "Dataset" / "1.png", seed=2)
    out = tmp_path / "out"
    done = run_here("screen", "malaria", "--dataset", "chula-rbc12", "--data", str(tmp_path / "data"), "--out",
                    str(out), "--workers", "0", "-q")
    assert done.returncode == 0, done.stderr
    assert [r["image"] for r in read_csv(out / "images.csv")] == [
        str(tmp_path / "data" / "smears" / "chula-rbc12" / "Dataset" / "1.png")]
    one_line_refusal(run_here("screen", "malaria", "--dataset", "txl-pbc", "--data", str(tmp_path / "data"),
                              "--out", str(tmp_path / "other"), "-q"), "cellscreen data fetch txl-pbc")


def test_a_shard_given_no_file_is_an_empty_part_that_merges(fake_finder, tmp_path):
    field = tmp_path / "fields" / "slide1" / "f0.png"
    write_field(field, seed=3)
    whole = tmp_path / "whole"
    assert run_here("screen", "malaria", str(field.parent), "--out", str(whole), "--workers", "0", "-q").returncode == 0
    parts = [tmp_path / f"part{i}" for i in range(2)]  # one file, two shards: one of them is given nothing
    for i, part in enumerate(parts):
        done = run_here("screen", "malaria", str(field.parent), "--out", str(part), "--shard", f"{i}/2",
                        "--workers", "0", "-q")
        assert done.returncode == 0, done.stderr
    assert sorted(len(read_csv(part / "images.csv")) for part in parts) == [0, 1]
    done = run_here("screen", "--merge", *map(str, parts), "--out", str(tmp_path / "merged"), "-q")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "merged" / "samples.csv").read_bytes() == (whole / "samples.csv").read_bytes()
