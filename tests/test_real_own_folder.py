"""End to end on a lab's own folder made from real NIH cells (two class folders, ``P<slide>_`` patient ids):
data info -> split -> train -> evaluate -> predict through ``cellscreen.cli.main``, the positive class, the
patient pattern and the split manifest given once, and the reported figures checked against hand counts made
here from the predictions (issue 34)."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter

import pytest

from tests.clitools import run_here
from tests.own_cells import PATIENT_REGEX, make_own_folder

pytestmark = pytest.mark.real_data


@pytest.fixture
def one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_own_folder_from_split_to_per_patient_counts(real_data, tmp_path, one_thread):
    cells = tmp_path / "cells"
    made = make_own_folder(real_data / "malaria-nih" / "cell_images", cells, slides=12, per_class=13)
    assert len(made) == 12
    ok = run_here("data", "info", str(cells), "--group-regex", PATIENT_REGEX, "--positive", "infected",
                  "--out", str(tmp_path / "info.json"), "-q")
    assert ok.returncode == 0, ok.stderr
    assert "12 patient(s)" in ok.stdout
    split = tmp_path / "split.csv"
    ok = run_here("split", str(cells), "--group-regex", PATIENT_REGEX, "--positive", "infected", "--val", "0.25",
                  "--test", "0.25", "--out", str(split), "-q")
    assert ok.returncode == 0, ok.stderr

    # given once: train reads the folder, the pattern and the positive class from the manifest
    run = tmp_path / "run"
    refused = run_here("train", "--split", str(split), "--positive", "normal", "--out", str(run), "-q")
    assert refused.returncode == 2 and "--positive normal contradicts" in refused.stderr
    ok = run_here("train", "--split", str(split), "--epochs", "2", "--operating-point", "sensitivity=0.95",
                  "--bootstrap", "100", "--out", str(run), "-q")
    assert ok.returncode == 0, ok.stderr
    meta = json.loads((run / "model.json").read_text())
    assert meta["positive_class"] == "infected" and meta["group_regex"] == PATIENT_REGEX
    threshold = meta["decision_threshold"]

    evaluation = tmp_path / "eval"
    ok = run_here("evaluate", str(run), "--split", str(split), "--subset", "test", "--bootstrap", "100",
                  "--out", str(evaluation), "-q")
    assert ok.returncode == 0, ok.stderr
    report = json.loads((evaluation / "metrics.json").read_text())
    with split.open() as handle:
        test_rows = [row for row in csv.DictReader(handle) if row["subset"] == "test"]
    test_patients = {re.match(r"P\d+", row["path"].split("/")[-1]).group(0) for row in test_rows}
    assert report["n_groups"] == len(test_patients) and report["groups_known"]
    with (evaluation / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(test_rows)
    flagged = {r["path"]: float(r["p_infected"]) >= threshold for r in rows}
    infected = [flagged[r["path"]] for r in rows if r["label"] == "infected"]
    normal = [not flagged[r["path"]] for r in rows if r["label"] == "normal"]
    assert report["metrics"]["sensitivity"] == pytest.approx(sum(infected) / len(infected))
    assert report["metrics"]["specificity"] == pytest.approx(sum(normal) / len(normal))
    if len(test_patients) < 5:
        assert any("too few" in w for w in report["warnings"])
    refused = run_here("evaluate", str(run), "--split", str(split), "--subset", "test", "--positive", "normal",
                       "--out", str(tmp_path / "e2"), "-q")
    assert refused.returncode == 2 and "contradicts" in refused.stderr

    # predict: one row per cell, probabilities rounded, and per-patient counts at the model's threshold
    out = tmp_path / "predictions.csv"
    ok = run_here("predict", str(run), str(cells), "--workers", "0", "--out", str(out), "-q")
    assert ok.returncode == 0, ok.stderr
    with out.open() as handle:
        predicted = list(csv.DictReader(handle))
    assert len(predicted) == 312 and all(len(r["p_infected"].split(".")[-1]) <= 4 for r in predicted)
    by_hand = Counter()
    cells_of = Counter()
    for r in predicted:
        patient = re.match(r"P\d+", r["path"].replace("\\", "/").split("/")[-1]).group(0)
        cells_of[patient] += 1
        by_hand[patient] += r["predicted"] == "infected"
        # called at the model's threshold (from the probability before it was rounded to 4 decimals)
        p = float(r["p_infected"])
        assert r["predicted"] == ("infected" if p >= threshold else "normal") or abs(p - threshold) <= 5e-5
    with (tmp_path / "predictions.samples.csv").open() as handle:
        samples = {r["sample"]: r for r in csv.DictReader(handle)}
    assert set(samples) == set(made)
    for patient, row in samples.items():
        assert int(row["cells"]) == cells_of[patient] == 26 and int(row["flagged"]) == by_hand[patient]
        assert float(row["ci95_low"]) <= float(row["flagged_share"]) <= float(row["ci95_high"])
    record = json.loads((tmp_path / "predictions.csv.json").read_text())
    assert record["decision_threshold"] == threshold and record["model_name"] == meta["model"]
    assert record["model_version"]["weights_sha256"] == meta["weights_sha256"]
