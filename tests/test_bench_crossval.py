"""bench/crossval.py and bench/crossval_ensemble.py on a tiny synthetic folder: each fold trained once and
tested on its own slides, finished folds reused, other settings refused, ensembles of runs on one split."""

from __future__ import annotations

import pytest

from tests.benchscripts import QUICK, bench, lines, make_cells, read_rows


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    return make_cells(tmp_path_factory.mktemp("bench-cells"), tmp_path_factory.mktemp("bench-cache"))


@pytest.fixture(scope="module")
def crossval_run(cells, tmp_path_factory):
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
    (out / "fold1" / "wall_seconds.txt").write_text("not a number")  # a damaged record of the time: unknown
    damaged = lines(bench("crossval.py", "--data", images, "--folds", "2", "--out", out, *QUICK, env=env))
    assert damaged[1]["wall_seconds"] is None and damaged[1]["accuracy"] == printed[1]["accuracy"]

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
                "--only", "0", env=env))

    made = bench("crossval_ensemble.py", first, second, "--data", images, "--out", tmp_path / "ens", env=env)
    *folds, summary = lines(made)
    assert [(row["fold"], row["members"]) for row in folds] == [(0, 2)] and summary["folds"] == 1
    assert f"fold 1 left out: no finished run in {second / 'fold1'}" in made.stderr  # the second ran fold 0 only
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
