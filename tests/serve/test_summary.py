"""Per-sample summaries of a prediction file (issue 34)."""

import json

import pytest
from scipy.stats import binomtest

from cellscreen.serve.summary import sample_of, summarise_predictions, write_summary


def write_predictions(path, rows, threshold):
    lines = ["path,predicted,p_normal,p_infected,status"]
    lines += [f"{p},{'infected' if q >= threshold else 'normal'},{1 - q:.4f},{q:.4f},ok" if q is not None
              else f"{p},,,,skipped: unreadable" for p, q in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_sample_from_the_pattern_else_the_folder():
    assert sample_of("slides/P12_cell_3.png", r"^(P\d+)_") == "P12"
    assert sample_of("slides/A/cell_3.png", r"^(P\d+)_") == "A"
    assert sample_of("slides/A/cell_3.png", None) == "A"


def test_counts_and_wilson_interval_per_sample(tmp_path):
    rows = [("in/P1_a.png", 0.9), ("in/P1_b.png", 0.2), ("in/P1_c.png", 0.31), ("in/P2_a.png", 0.1),
            ("in/P2_b.png", None)]
    path = write_predictions(tmp_path / "p.csv", rows, 0.3)
    p1, p2 = summarise_predictions(path, positive_class="infected", group_regex=r"^(P\d+)_")
    assert (p1.sample, p1.cells, p1.flagged) == ("P1", 3, 2) and (p2.sample, p2.cells, p2.flagged) == ("P2", 1, 0)
    expected = binomtest(2, 3).proportion_ci(method="wilson")
    assert (p1.low, p1.high) == pytest.approx((expected.low, expected.high))
    assert p2.low == 0 and p2.high > 0.5


def test_write_summary_records_model_name_version_and_threshold(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.json").write_text(json.dumps({
        "model": "compact_cnn6sc", "cellscreen": "9.9", "created": "2026-12-07T00:00:00Z", "weights_sha256": "ab",
        "classes": ["normal", "infected"], "positive_class": "infected", "decision_threshold": 0.25,
        "group_regex": r"^(P\d+)_"}))
    out = write_predictions(tmp_path / "p.csv", [("x/P1_a.png", 0.26), ("x/P1_b.png", 0.24)], 0.25)
    (summary,) = write_summary(out, run)
    assert (summary.sample, summary.cells, summary.flagged) == ("P1", 2, 1)
    record = json.loads((tmp_path / "p.csv.json").read_text())
    assert record["model_name"] == "compact_cnn6sc" and record["decision_threshold"] == 0.25
    assert record["model_version"]["cellscreen"] == "9.9" and record["model_version"]["weights_sha256"] == "ab"
    assert (tmp_path / "p.samples.csv").read_text().splitlines()[1].startswith("P1,2,1,0.5000,")


def test_a_row_calls_the_cell_at_the_threshold_and_rounds_to_4_decimals():
    from pathlib import Path

    import numpy as np

    from cellscreen.serve.outputs import row

    classes = ["normal", "infected"]
    proba = np.array([0.93333333, 0.06666667])
    assert row(Path("a.png"), classes, proba=proba, positive_class="infected", threshold=0.05) == [
        "a.png", "infected", "0.9333", "0.0667", "ok"]
    assert row(Path("a.png"), classes, proba=proba)[1] == "normal"  # no threshold given: 0.5


def test_the_card_names_the_labels_and_the_extra_cells_a_model_learned(tmp_path):
    from cellscreen.serve.summary import validation_card

    description = {"dataset": "malaria-nih", "relabels": {"files": {"/data/x/fixes.csv": "ab" * 32}, "changed": 7,
                                                          "excluded": 2},
                   "train": {"images": 10, "config": {"extra_train": ["runs/smear-negatives"], "val": 0.15}}}
    card = validation_card(description, tmp_path)
    assert card["labels"] == {"files": {"fixes.csv": "ab" * 32}, "changed": 7, "excluded": 2}
    assert card["extra_training"] == ["smear-negatives"] and card["test"] is None
    plain = validation_card({"dataset": "malaria-nih", "train": {"config": {"extra_train": "one"}}})
    assert plain["labels"] is None and plain["extra_training"] == ["one"]
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "metrics.json").write_text(json.dumps({"metrics": {"n": 5, "accuracy": 0.8}}))
    test = validation_card(description, tmp_path)["test"]
    assert test["accuracy"] == {"value": 0.8, "ci95": None} and test["labels"] == "the dataset's own"
