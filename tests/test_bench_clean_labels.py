"""bench/clean_labels.py and bench/confident_errors.py on tiny synthetic folders: the training cells whose
labels disagree with what models of other slides see are left out, never a test cell; the confident mistakes
counted per label and slide."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchscripts import BENCH, QUICK, bench, lines, make_cells, read_rows, split_manifest
from tests.conftest import make_malaria_like


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    return make_cells(tmp_path_factory.mktemp("bench-cells"), tmp_path_factory.mktemp("bench-cache"))


@pytest.fixture(scope="module")
def folds(cells, tmp_path_factory) -> Path:
    """A 2-fold split of ``cells`` by slide, as bench/crossval.py makes it."""
    images, env = cells
    return split_manifest(images, tmp_path_factory.mktemp("split") / "folds.csv", env, "--method", "kfold",
                          "--folds", "2", "--seed", "0")


@pytest.fixture(scope="module")
def pruned(cells, folds, tmp_path_factory):
    """clean_labels.py run on fold 0 of ``folds``: its folder, arguments and printed row."""
    images, env = cells
    out = tmp_path_factory.mktemp("clean") / "clean"
    args = ["--split", folds, "--data", images, "--out", out, "--inner", "2", "--below", "0.5", "--only", "0",
            *QUICK]
    (row,) = lines(bench("clean_labels.py", *args, env=env))[:-1]
    return out, args, row


def test_clean_labels_leaves_out_training_cells_that_disagree_with_their_label_never_test_cells(
        cells, folds, pruned):
    images, env = cells
    out, args, row = pruned
    outer = read_rows(folds)
    cleaned = read_rows(out / "fold0" / "cleaned.csv")
    suspects = read_rows(out / "fold0" / "suspects.csv")
    # the suspects are the training cells filed wrong, each scored below --below by a model that never saw it;
    # the same cells on the test fold's slides stay
    training = {r["path"] for r in outer if r["fold"] != "0"}
    planted = {r["path"] for r in outer if r["path"].endswith("cell_99.png")}
    assert {s["path"] for s in suspects} == planted & training and 0 < row["left_out"] == len(suspects) < len(planted)
    assert all(float(s["p_own_label"]) < 0.5 for s in suspects)
    assert {r["path"] for r in cleaned} == {r["path"] for r in outer} - {s["path"] for s in suspects}
    assert [r for r in cleaned if r["fold"] == "0"] == [r for r in outer if r["fold"] == "0"]  # test fold untouched
    scored = [read_rows(out / "fold0" / "inner" / f"fold{j}" / "test" / "predictions.csv") for j in (0, 1)]
    assert sorted(r["path"] for part in scored for r in part) == sorted(training)  # each scored once, out of fold

    final = out / "fold0" / "final" / "model.safetensors"
    before = final.stat().st_mtime_ns
    assert lines(bench("clean_labels.py", *args, env=env))[0] == row and final.stat().st_mtime_ns == before
    other = bench("clean_labels.py", *args[:-len(QUICK)], "--below", "0.2", *QUICK, env=env)
    assert other.returncode != 0 and "holds runs of other settings" in other.stderr


def test_clean_labels_flips_the_cells_cleanlab_flags_to_the_suggested_class_never_a_test_cell(cells, folds, pruned,
                                                                                            tmp_path):
    import shutil

    images, env = cells
    out = tmp_path / "flip"
    # the inner folds' scores of the pruning run are reused (the same split, inner folds and settings): only
    # the final run trains here
    shutil.copytree(pruned[0] / "fold0" / "inner", out / "fold0" / "inner")
    planted = [r["path"] for r in read_rows(folds) if r["path"].endswith("cell_99.png")]
    judge = tmp_path / "judge.csv"  # the planted parasites filed as uninfected, put right
    judge.write_text("path,label\n" + "".join(f"{p},Parasitized\n" for p in planted))
    args = ["--split", folds, "--data", images, "--out", out, "--inner", "2", "--rank", "cleanlab", "--action", "flip",
            "--only", "0", "--judge", judge, *QUICK]
    (row, summary) = lines(bench("clean_labels.py", *args, env=env))
    outer = read_rows(folds)
    training = {r["path"] for r in outer if r["fold"] != "0"}
    flips = read_rows(out / "fold0" / "flips.csv")
    suspects = read_rows(out / "fold0" / "suspects.csv")
    assert [f["path"] for f in flips] == sorted(s["path"] for s in suspects) and row["flipped"] == len(flips) > 0
    assert {f["path"] for f in flips} <= training  # chosen among the training cells only
    assert all(f["label"] != s["label"] for f, s in zip(flips, sorted(suspects, key=lambda s: s["path"])))
    assert set(planted) & training & {f["path"] for f in flips}  # the planted mistakes are among them
    final = out / "fold0" / "final"
    assert str((out / "fold0" / "flips.csv").resolve()) in (final / "config.yaml").read_text()  # trained flipped
    tested = read_rows(final / "test" / "predictions.csv")
    assert sorted(r["path"] for r in tested) == sorted(r["path"] for r in outer if r["fold"] == "0")
    assert all(r["label"] == r["given_label"] for r in tested)  # the test fold keeps the folder's labels
    assert not (out / "fold0" / "cleaned.csv").read_text() == ""  # the pruned copy is kept beside, for review
    assert row["given_accuracy"] == row["accuracy"] and row["judged_n"] == row["given_n"] == len(tested)
    judged_planted = [r for r in tested if r["path"] in set(planted)]
    assert row["judge_differs"] == len(judged_planted) > 0 and summary["pooled_judged_n"] == len(tested)


@pytest.mark.parametrize("args, message", [
    (["--below", "1.5"], "--below is a probability between 0 and 1"),
    (["--inner", "1"], "--inner needs at least 2 folds"),
    (["--only", "7"], "has no fold 7"),
])
def test_clean_labels_refuses_bad_settings_before_training(folds, cells, tmp_path, args, message):
    _, env = cells
    result = bench("clean_labels.py", "--split", folds, "--out", tmp_path / "clean", *args, env=env)
    assert result.returncode != 0 and message in result.stderr
    assert not (tmp_path / "clean").exists()


def test_clean_labels_refuses_a_hold_out_manifest(cells, tmp_path):
    images, env = cells
    split = split_manifest(images, tmp_path / "split.csv", env)  # training, validation and test subsets
    result = bench("clean_labels.py", "--split", split, "--out", tmp_path / "clean", env=env)
    assert result.returncode != 0 and "is not a k-fold manifest" in result.stderr


def test_confident_errors_counts_mistakes_per_label_and_slide(tmp_path):
    images = make_malaria_like(tmp_path, {"C1": {"Parasitized": 2, "Uninfected": 2},
                                          "C2": {"Parasitized": 2, "Uninfected": 2}})
    rows = [  # path, group, label, predicted, p_Uninfected
        ("Parasitized/C1P9ThinF_IMG_2015_cell_0.png", "C1", "Parasitized", "Uninfected", 0.95),  # confident
        ("Parasitized/C1P9ThinF_IMG_2015_cell_1.png", "C1", "Parasitized", "Uninfected", 0.6),
        ("Uninfected/C1P9ThinF_IMG_2015_cell_0.png", "C1", "Uninfected", "Uninfected", 0.9),
        ("Uninfected/C1P9ThinF_IMG_2015_cell_1.png", "C1", "Uninfected", "Uninfected", 0.8),
        ("Parasitized/C2P9ThinF_IMG_2015_cell_0.png", "C2", "Parasitized", "Parasitized", 0.1),
        ("Parasitized/C2P9ThinF_IMG_2015_cell_1.png", "C2", "Parasitized", "Parasitized", 0.2),
        ("Uninfected/C2P9ThinF_IMG_2015_cell_0.png", "C2", "Uninfected", "Parasitized", 0.05),  # confident
        ("Uninfected/C2P9ThinF_IMG_2015_cell_1.png", "C2", "Uninfected", "Uninfected", 0.7),
    ]
    predictions = tmp_path / "predictions.csv"
    with predictions.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "group", "label", "predicted", "p_Uninfected", "p_Parasitized"])
        writer.writerows([*row[:4], p, round(1 - p, 4)] for *row, p in rows)
    result = subprocess.run([sys.executable, str(BENCH / "confident_errors.py"), "--predictions", str(predictions),
                             "--root", str(images), "--montage", str(tmp_path / "m" / "sheet"), "--show", "5"],
                            capture_output=True, text=True, check=True)
    report = json.loads(result.stdout)
    assert (report["cells"], report["mistakes"], report["confident_mistakes"]) == (8, 3, 2)
    assert report["accuracy"] == 0.625
    parasitized = report["by_label"]["Parasitized"]
    assert (parasitized["mistakes"], parasitized["confident_mistakes"]) == (2, 1)
    assert parasitized["most_confident"] == [rows[0][0], rows[1][0]]  # the most confident first
    assert Path(parasitized["montage"]).is_file() and Path(report["by_label"]["Uninfected"]["montage"]).is_file()
    worst = report["slides_with_most_mistakes"][0]
    assert (worst["slide"], worst["label"], worst["mistakes"], worst["confident"]) == ("C1", "Parasitized", 2, 1)
