"""``cellscreen screen --cells white`` end to end on real data: a small leukemia model trained here on a few
real Taleqani cells screens three real TXL-PBC fields; a model of the other kind of cell is refused in one
line."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.clitools import run_here
from tests.screen.test_cli import one_line_refusal
from tests.browser import CHROMIUM, open_report
from tests.screen.runs import read_csv

WHITE_LINE = re.compile(r"^(?P<sample>.+): (?P<images>\d+) image\(s\), (?P<white>[\d,]+) white cells counted, "
                        r"(?P<blasts>[\d,]+) blasts, blast share (?P<percent>[\d.]+)% \(95% CI [\d.]+-[\d.]+\), "
                        r"(?P<red>[\d,]+) red cells counted")
FIELDS = ("01252e0c-0bf1-535d-ad2d-bca294125f0a", "018239dc-02bb-5c9c-be33-0737ee53d592",
          "0184a270-648e-5e6d-bc61-a9e8f7b0f6e4")  # TXL-PBC fields with one white cell labelled each


def check_report_in_chromium(out: Path, share: str) -> None:
    """The report opens in Chromium with its three overlays, the sample's blast share, and prints."""
    if CHROMIUM is None:
        return  # test_pipeline says so once, with how to install it
    seen = open_report(out / "report.html", "#samples tr")
    shown, rows, printed = seen["images"], seen["rows"], seen["pdf"]
    assert len(shown) == 3 and all(complete and width > 100 for _, complete, width in shown), shown
    assert "blast share" in rows[0] and share in rows[1], rows
    assert printed.startswith(b"%PDF")


def test_white_cells_of_real_fields_go_to_a_leukemia_model(real_data, tmp_path):
    cells = tmp_path / "taleqani"
    for label in ("Benign", "Early", "Pre", "Pro"):  # 10 real cells of each class, linked
        (cells / label).mkdir(parents=True)
        for source in sorted((real_data / "leukemia-taleqani" / label).glob("*.jpg"))[:10]:
            (cells / label / source.name).symlink_to(source)
    run = tmp_path / "run"
    done = run_here("train", str(cells), "--dataset", "taleqani", "--model", "compact_cnn", "--input-size", "32",
                    "--epochs", "2", "--batch-size", "8", "--workers", "0", "--out", str(run), "-q")
    assert done.returncode == 0, done.stderr
    smear = real_data / "smears" / "txl-pbc" / "TXL_PBC"
    fields = tmp_path / "fields" / "slide1"
    fields.mkdir(parents=True)
    for name in FIELDS:
        (fields / f"{name}.jpg").symlink_to(smear / "images" / "train" / f"{name}.jpg")
        assert (smear / "labels" / "train" / f"{name}.txt").read_text().count("\n0 ") + (
            smear / "labels" / "train" / f"{name}.txt").read_text().startswith("0 ") == 1

    out = tmp_path / "out"
    done = run_here("screen", "--cells", "white", "--model", str(run), str(fields), "--out", str(out), "--workers",
                    "0", "--engine", "torch", "-q")  # PyTorch: the ONNX export, slow on a loaded machine, is tested
                                                     # in test_white
    assert done.returncode == 0, done.stderr
    line = next(m for m in map(WHITE_LINE.match, done.stdout.splitlines()) if m)
    assert (line["sample"], line["images"], line["white"]) == (str(fields), "3", "3")
    assert "only 3 white cells counted; a blast count needs at least 200" in done.stdout
    rows = read_csv(out / "cells.csv")
    counted = [r for r in rows if r["kind"] == "white" and r["counted"] == "1"]
    blasts = sum(r["class"] in ("Early", "Pre", "Pro") for r in counted)
    assert len(counted) == 3 and int(line["blasts"]) == blasts
    assert all(abs(sum(float(r[f"p_{c}"]) for c in ("Benign", "Early", "Pre", "Pro")) - 1) < 1e-3 for r in counted)
    assert all(r["class"] == "" for r in rows if r["kind"] == "red")
    sample = read_csv(out / "samples.csv")[0]
    assert (sample["white_counted"], sample["blasts"], sample["parasitemia_percent"]) == ("3", str(blasts), "")
    assert float(sample["blast_percent"]) == round(100 * blasts / 3, 3)
    record = json.loads((out / "screen.json").read_text())
    assert record["blast_classes"] == ["Early", "Pre", "Pro"] and record["white_cut"]["style"] == "context"
    assert len(list((out / "overlays").glob("*.png"))) == 3
    assert "blast share (95% interval)" in (out / "report.html").read_text()
    check_report_in_chromium(out, f"{float(sample['blast_percent']):.2f}%")

    one_line_refusal(run_here("screen", "malaria", str(fields), "--cells", "white", "--out", str(tmp_path / "m"),
                              "-q"), "red-cell model", "leukemia model")
    one_line_refusal(run_here("screen", str(run), str(fields), "--out", str(tmp_path / "r"), "--engine", "torch", "-q"),
                     "leukemia model", "--cells white")
    one_line_refusal(run_here("screen", "--cells", "white", "--model", str(run), str(fields), "--blast-classes",
                              "Blast", "--engine", "torch", "--out", str(tmp_path / "b"), "-q"), "Blast",
                     "Benign, Early, Pre, Pro")
    assert not any((tmp_path / name).exists() for name in ("m", "r", "b"))
