"""A lab's own folder of class folders, from split to report: the positive class, the patient pattern and the
split manifest are given once, later commands take them from the manifest or the checkpoint (issue 34)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from cellscreen.cli import build_parser
from cellscreen.cli.options import train_config
from cellscreen.config import load_config
from cellscreen.data.sources import get_profile, resolve_dataset_dir
from cellscreen.errors import UserError
from cellscreen.evaluate.metrics import compute_metrics
from tests.clitools import run_here
from tests.conftest import write_cell

PATTERN = r"^(P\d+)_"


def make_own_folder(root: Path, patients: int = 10, per_class: int = 8) -> Path:
    """``infected`` and ``normal`` class folders of learnable fake cells named ``P<n>_cell_<i>.png``."""
    seed = 0
    for n in range(1, patients + 1):
        for label in ("infected", "normal"):
            for i in range(per_class):
                write_cell(root / label / f"P{n}_cell_{i}.png", seed, (20, 20), parasite=label == "infected")
                seed += 1
    return root


@pytest.fixture(scope="module")
def own_split(tmp_path_factory) -> Path:
    folder = make_own_folder(tmp_path_factory.mktemp("own") / "cells")
    split = folder.parent / "split.csv"
    result = run_here("split", str(folder), "--group-regex", PATTERN, "--positive", "infected", "--out", str(split),
                      "--val", "0.2", "--test", "0.3", "-q")
    assert result.returncode == 0, result.stderr
    return split


@pytest.fixture(scope="module")
def own_run(own_split) -> Path:
    """Trained from the manifest alone, with a threshold chosen for 99% sensitivity on the validation cells."""
    out = own_split.parent / "run"
    result = run_here("train", "--split", str(own_split), "--input-size", "16", "--epochs", "4", "--batch-size",
                      "16", "--lr", "0.01", "--operating-point", "sensitivity=0.99", "--bootstrap", "50",
                      "--out", str(out), "-q")
    assert result.returncode == 0, result.stderr
    return out


def test_the_split_manifest_records_how_the_folder_was_read(own_split):
    meta = json.loads(own_split.with_suffix(".json").read_text())
    assert meta["positive_class"] == "infected" and meta["group_regex"] == PATTERN and meta["dataset"] == "folder"


def test_train_takes_the_positive_class_pattern_and_folder_from_the_manifest(own_split):
    args = build_parser().parse_args(["train", "--split", str(own_split), "--out", "x"])
    config = train_config(args)
    assert (config.dataset, config.group_regex, config.positive_class) == ("folder", PATTERN, "infected")


def test_train_refuses_a_positive_class_the_manifest_contradicts(own_split, tmp_path):
    result = run_here("train", "--split", str(own_split), "--positive", "normal", "--out", str(tmp_path / "r"), "-q")
    assert result.returncode == 2
    assert "--positive normal contradicts" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_positive_class_is_a_setting():
    assert load_config(None, {}, ["positive_class=infected"]).positive_class == "infected"


def test_train_dir_without_dataset_reads_a_folder_of_classes(tmp_path):
    args = build_parser().parse_args(["train", str(tmp_path), "--out", "x"])
    assert train_config(args).dataset == "folder"


def test_a_known_profile_on_ones_own_folder_says_what_to_pass(tmp_path):
    (tmp_path / "infected").mkdir()
    with pytest.raises(UserError, match="pass --dataset folder"):
        resolve_dataset_dir(get_profile("malaria-nih"), tmp_path)


def test_two_class_roc_auc_without_a_positive_class_is_computed():
    y = np.array([0, 0, 1, 1])
    p1 = np.array([0.1, 0.6, 0.4, 0.9])
    assert compute_metrics(y, np.c_[1 - p1, p1], classes=["a", "b"])["roc_auc"] == pytest.approx(0.75)


def test_the_checkpoint_keeps_positive_class_pattern_and_threshold(own_run):
    meta = json.loads((own_run / "model.json").read_text())
    assert meta["positive_class"] == "infected" and meta["classes"] == ["normal", "infected"]
    assert meta["group_regex"] == PATTERN
    decision = meta["decision"]
    assert meta["decision_threshold"] == decision["threshold"] and 0 < decision["threshold"] < 1
    assert decision["operating_point"] == "sensitivity=0.99" and decision["sensitivity"] >= 0.99


def test_evaluate_takes_the_groups_from_the_manifest_and_the_threshold_from_the_model(own_run, own_split, tmp_path):
    out = tmp_path / "eval"
    result = run_here("evaluate", str(own_run), "--split", str(own_split), "--subset", "test", "--bootstrap", "50",
                      "--out", str(out), "-q")
    assert result.returncode == 0, result.stderr
    with own_split.open() as handle:
        test_rows = [row for row in csv.DictReader(handle) if row["subset"] == "test"]
    report = json.loads((out / "metrics.json").read_text())
    assert report["n_groups"] == len({row["group"] for row in test_rows}) < len(test_rows)  # patients, not cells
    assert report["groups_known"] and report["positive_class"] == "infected"
    threshold = json.loads((own_run / "model.json").read_text())["decision_threshold"]
    assert report["decision_threshold"] == threshold
    with (out / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    called = [float(r["p_infected"]) >= threshold for r in rows]
    assert [r["predicted"] == "infected" for r in rows] == called
    infected = [c for r, c in zip(rows, called) if r["label"] == "infected"]
    normal = [not c for r, c in zip(rows, called) if r["label"] == "normal"]
    assert report["metrics"]["sensitivity"] == pytest.approx(sum(infected) / len(infected))
    assert report["metrics"]["specificity"] == pytest.approx(sum(normal) / len(normal))
    assert set(report["metrics_at_default_threshold"]) >= {"sensitivity", "specificity"}
    assert "at 0.5" in (out / "report.md").read_text()


def test_evaluate_refuses_another_positive_class(own_run, own_split, tmp_path):
    result = run_here("evaluate", str(own_run), "--split", str(own_split), "--subset", "test", "--positive",
                      "normal", "--out", str(tmp_path / "e"), "-q")
    assert result.returncode == 2 and "--positive normal contradicts the model" in result.stderr


def test_evaluate_refuses_a_pattern_the_manifest_contradicts(own_run, own_split, tmp_path):
    result = run_here("evaluate", str(own_run), "--split", str(own_split), "--subset", "test", "--group-regex",
                      r"^(P\d)", "--out", str(tmp_path / "e"), "-q")
    assert result.returncode == 2 and "--group-regex" in result.stderr


def test_a_split_with_few_patients_in_a_part_warns(own_split):
    result = run_here("split", str(own_split.parent / "cells"), "--group-regex", PATTERN, "--out",
                      str(own_split.parent / "small.csv"), "-q")
    assert result.returncode == 0, result.stderr
    assert "warning: the test part holds only" in result.stdout


def test_the_threshold_can_be_set_afterwards(own_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(own_run, run)
    trained = json.loads((run / "model.json").read_text())
    ok = run_here("threshold", str(run), "--operating-point", "sensitivity=0.99", "-q")
    assert ok.returncode == 0, ok.stderr
    again = json.loads((run / "model.json").read_text())
    assert again["decision_threshold"] == pytest.approx(trained["decision_threshold"], abs=1e-6)
    assert again["weights_sha256"] == trained["weights_sha256"]
    assert run_here("threshold", str(run), "--threshold", "0.3", "-q").returncode == 0
    assert json.loads((run / "model.json").read_text())["decision_threshold"] == 0.3


def test_predict_summarises_each_patient_at_the_models_threshold(own_run, own_split, tmp_path):
    out = tmp_path / "predictions.csv"
    ok = run_here("predict", str(own_run), str(own_split.parent / "cells"), "--workers", "0", "--out", str(out), "-q")
    assert ok.returncode == 0, ok.stderr
    threshold = json.loads((own_run / "model.json").read_text())["decision_threshold"]
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    flagged, cells = {}, {}
    for r in rows:
        patient = Path(r["path"]).name.split("_")[0]
        cells[patient] = cells.get(patient, 0) + 1
        flagged[patient] = flagged.get(patient, 0) + (r["predicted"] == "infected")
        assert len(r["p_infected"].split(".")[1]) == 4
        p = float(r["p_infected"])
        assert r["predicted"] == ("infected" if p >= threshold else "normal") or abs(p - threshold) <= 5e-5
    with (tmp_path / "predictions.samples.csv").open() as handle:
        samples = {r["sample"]: r for r in csv.DictReader(handle)}
    assert {k: (int(v["cells"]), int(v["flagged"])) for k, v in samples.items()} == {
        k: (cells[k], flagged[k]) for k in cells}
    assert len(samples) == 10 and "P3: " in ok.stdout
    record = json.loads((tmp_path / "predictions.csv.json").read_text())
    assert record["decision_threshold"] == threshold and record["model_version"]["weights_sha256"]


def test_evaluate_on_another_folder_without_patient_ids_warns_intervals_are_over_cells(own_run, own_split, tmp_path):
    import shutil

    cells = tmp_path / "other-lab"
    shutil.copytree(own_split.parent / "cells", cells)
    out = tmp_path / "eval"
    ok = run_here("evaluate", str(own_run), str(cells), "--bootstrap", "50", "--out", str(out), "-q")
    assert ok.returncode == 0, ok.stderr
    report = json.loads((out / "metrics.json").read_text())
    assert not report["groups_known"] and any("No patient or slide id" in w for w in report["warnings"])
    assert "bootstrap over cells (no patient id known)" in (out / "report.md").read_text()
