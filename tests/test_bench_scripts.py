"""The cross-validation scripts in bench/ that BENCHMARKS.md's accuracy figures come from, run as a user runs
them on a tiny synthetic malaria-like folder: each fold trained once and tested on its own slides, finished
folds reused, other settings refused, ensembles of runs on one split, suspect training labels left out."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_malaria_like, write_cell

BENCH = Path(__file__).resolve().parents[1] / "bench"
SLIDES = [f"C{n}" for n in range(1, 13)]
# small and quick, but enough for a model trained on three slides to learn the spot
QUICK = ["--set", "input_size=16", "--set", "epochs=20", "--set", "batch_size=16", "--set", "lr=0.01"]


def bench(script: str, *args, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(BENCH / script), *map(str, args)], capture_output=True,
                            text=True, env=env, timeout=600)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def lines(result: subprocess.CompletedProcess) -> list[dict]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def read_rows(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(row for row in handle if not row.startswith("#")))


@pytest.fixture(scope="module")
def cells(tmp_path_factory) -> tuple[Path, dict]:
    """12 fake slides of 16 cells per class; on each slide one cell with a parasite is filed as uninfected."""
    root = tmp_path_factory.mktemp("bench-cells")
    images = make_malaria_like(root, {slide: {"Parasitized": 16, "Uninfected": 16} for slide in SLIDES},
                               learnable=True, size=(20, 20))
    for n, slide in enumerate(SLIDES):
        write_cell(images / "Uninfected" / f"{slide}P9ThinF_IMG_2015_cell_99.png", 10_000 + n, (20, 20), True)
    env = {**os.environ, "CELLSCREEN_CACHE": str(tmp_path_factory.mktemp("bench-cache"))}
    return images, env


@pytest.fixture(scope="module")
def crossval_run(cells, tmp_path_factory) -> tuple[Path, list[dict]]:
    images, env = cells
    out = tmp_path_factory.mktemp("cv") / "a"
    result = bench("crossval.py", "--data", images, "--folds", "2", "--out", out, *QUICK, env=env)
    return out, lines(result)


def test_crossval_tests_every_cell_once_reuses_finished_folds_and_refuses_other_settings(cells, crossval_run):
    images, env = cells
    out, printed = crossval_run
    *folds, summary = printed
    assert [row["fold"] for row in folds] == [0, 1]
    assert sum(row["n_test"] for row in folds) == len(list(images.rglob("*.png")))  # each cell tested once
    split = read_rows(out / "folds.csv")
    for fold in (0, 1):  # every fold's test cells are its own slides' cells, and no training slide's
        tested = {row["path"] for row in read_rows(out / f"fold{fold}" / "test" / "predictions.csv")}
        assert tested == {row["path"] for row in split if row["fold"] == str(fold)}
    assert summary["folds"] == 2
    assert summary["accuracy_mean"] == pytest.approx(sum(row["accuracy"] for row in folds) / 2, abs=1e-4)
    assert all(row["wall_seconds"] > 0 for row in folds)

    model = out / "fold0" / "model.safetensors"
    before = model.stat().st_mtime_ns
    again = lines(bench("crossval.py", "--data", images, "--folds", "2", "--out", out, *QUICK, env=env))
    assert again == printed and model.stat().st_mtime_ns == before  # nothing trained again

    other = bench("crossval.py", "--data", images, "--folds", "2", "--out", out, *QUICK, "--set", "epochs=5",
                  env=env)
    assert other.returncode != 0 and "holds runs of other settings" in other.stderr
    (out / "crossval.json").write_text("{not json")
    broken = bench("crossval.py", "--data", images, "--folds", "2", "--out", out, *QUICK, env=env)
    assert broken.returncode != 0 and "cannot be read" in broken.stderr
    assert model.stat().st_mtime_ns == before


def test_crossval_ensemble_averages_runs_of_one_split_and_refuses_runs_of_another(cells, crossval_run,
                                                                                   tmp_path):
    images, env = cells
    first, printed = crossval_run
    second = tmp_path / "b"
    second.mkdir()
    (second / "folds.csv").write_bytes((first / "folds.csv").read_bytes())  # the same folds, another seed
    lines(bench("crossval.py", "--data", images, "--folds", "2", "--out", second, *QUICK, "--set", "seed=1",
                env=env))

    rows = lines(bench("crossval_ensemble.py", first, second, "--data", images, "--out", tmp_path / "ens",
                       env=env))
    *folds, summary = rows
    assert [(row["fold"], row["members"]) for row in folds] == [(0, 2), (1, 2)]
    for row, single in zip(folds, printed):
        assert row["n_test"] == single["n_test"]
        trained = [float((run / f"fold{row['fold']}" / "wall_seconds.txt").read_text()) for run in (first, second)]
        assert row["wall_seconds"] == pytest.approx(sum(trained), abs=0.1)
        # each cell's ensemble probability is the average of its members' (each calibrated by its own temperature)
        members = [read_rows(run / f"fold{row['fold']}" / "test" / "predictions.csv") for run in (first, second)]
        ensemble = read_rows(tmp_path / "ens" / f"fold{row['fold']}" / "test" / "predictions.csv")
        assert [r["path"] for r in ensemble] == [r["path"] for r in members[0]] == [r["path"] for r in members[1]]
        got = [float(r["p_Parasitized"]) for r in ensemble]
        mean = [(float(a["p_Parasitized"]) + float(b["p_Parasitized"])) / 2 for a, b in zip(*members)]
        assert got == pytest.approx(mean, abs=2e-3)
        assert max(abs(float(a["p_Parasitized"]) - float(b["p_Parasitized"])) for a, b in zip(*members)) > 0.01
    assert summary["members"] == [str(first), str(second)]

    assert "at least two members" in bench("crossval_ensemble.py", first, "--out", tmp_path / "one", env=env).stderr
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "folds.csv").write_text((first / "folds.csv").read_text() + "\n")
    refused = bench("crossval_ensemble.py", first, moved, "--out", tmp_path / "mixed", env=env)
    assert refused.returncode != 0 and "different splits" in refused.stderr


def test_clean_labels_leaves_out_training_cells_that_disagree_with_their_label_never_test_cells(
        cells, crossval_run, tmp_path):
    images, env = cells
    first, _ = crossval_run
    split = first / "folds.csv"
    out = tmp_path / "clean"
    args = ["--split", split, "--data", images, "--out", out, "--inner", "2", "--below", "0.5", "--only", "0",
            *QUICK]
    (row,) = lines(bench("clean_labels.py", *args, env=env))[:-1]
    outer = read_rows(split)
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


@pytest.mark.parametrize("args, message", [
    (["--below", "1.5"], "--below is a probability between 0 and 1"),
    (["--inner", "1"], "--inner needs at least 2 folds"),
    (["--only", "7"], "has no fold 7"),
])
def test_clean_labels_refuses_bad_settings_before_training(crossval_run, cells, tmp_path, args, message):
    _, env = cells
    first, _ = crossval_run
    result = bench("clean_labels.py", "--split", first / "folds.csv", "--out", tmp_path / "clean", *args, env=env)
    assert result.returncode != 0 and message in result.stderr
    assert not (tmp_path / "clean").exists()


def test_clean_labels_refuses_a_hold_out_manifest(cells, tmp_path):
    images, env = cells
    split = tmp_path / "split.csv"
    subprocess.run([str(Path(sys.executable).with_name("cellscreen")), "split", "-d", "malaria-nih", "--data",
                    str(images), "--out", str(split), "-q"], check=True, env=env)
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
