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
    seconds = (out / "fold1" / "wall_seconds.txt").read_bytes()
    (out / "fold1" / "wall_seconds.txt").write_text("not a number")  # a damaged record of the time: unknown
    damaged = lines(bench("crossval.py", "--data", images, "--folds", "2", "--out", out, *QUICK, env=env))
    (out / "fold1" / "wall_seconds.txt").write_bytes(seconds)  # the run is shared with the tests below
    assert damaged[1]["wall_seconds"] is None and damaged[1]["accuracy"] == printed[1]["accuracy"]

    other = bench("crossval.py", "--data", images, "--folds", "2", "--out", out, *QUICK, "--set", "epochs=5",
                  env=env)
    assert other.returncode != 0 and "holds runs of other settings" in other.stderr
    settings = (out / "crossval.json").read_bytes()
    (out / "crossval.json").write_text("{not json")
    broken = bench("crossval.py", "--data", images, "--folds", "2", "--out", out, *QUICK, env=env)
    (out / "crossval.json").write_bytes(settings)  # the run is shared with the tests below
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

    ensemble = read_rows(tmp_path / "ens" / "fold0" / "test" / "predictions.csv")
    planted = [r["path"] for r in ensemble if r["path"].endswith("cell_99.png")]
    judge = tmp_path / "judge.csv"  # the planted parasites filed as uninfected, put right
    judge.write_text("path,label\n" + "".join(f"{p},Parasitized\n" for p in planted))
    judged = bench("crossval_ensemble.py", first, second, "--data", images, "--out", tmp_path / "ens-judged",
                   "--judge", judge, env=env)
    (row, summary) = lines(judged)
    truth = {p: "Parasitized" for p in planted}
    assert row["given_accuracy"] == folds[0]["accuracy"] and row["judge_differs"] == len(planted) > 0
    assert summary["pooled_judged_accuracy"] == pytest.approx(
        sum(r["predicted"] == truth.get(r["path"], r["label"]) for r in ensemble) / len(ensemble), abs=1e-4)

    assert "at least two members" in bench("crossval_ensemble.py", first, "--out", tmp_path / "one", env=env).stderr
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "folds.csv").write_text((first / "folds.csv").read_text() + "\n")
    refused = bench("crossval_ensemble.py", first, moved, "--out", tmp_path / "mixed", env=env)
    assert refused.returncode != 0 and "different splits" in refused.stderr


def _auc(labels: list[str], rows: list[dict]) -> float:
    from sklearn.metrics import roc_auc_score  # the yardstick, computed apart from the script's own code

    return roc_auc_score([label == "Parasitized" for label in labels], [float(r["p_Parasitized"]) for r in rows])


def test_crossval_judges_the_folds_against_a_relabel_file_beside_the_folders_labels(cells, crossval_run,
                                                                                    tmp_path):
    images, env = cells
    out, printed = crossval_run
    pooled = [row for fold in (0, 1) for row in read_rows(out / f"fold{fold}" / "test" / "predictions.csv")]
    planted = sorted(row["path"] for row in pooled if row["path"].endswith("cell_99.png"))
    left_out = next(row["path"] for row in pooled if row["label"] == "Parasitized")
    judge = tmp_path / "judge.csv"  # the planted parasites filed as uninfected, put right; one cell excluded
    judge.write_text("path,label\n" + "".join(f"{p},Parasitized\n" for p in planted) + f"{left_out},exclude\n")
    judged = bench("crossval.py", "--data", images, "--folds", "2", "--out", out, *QUICK, "--judge", judge, env=env)
    *folds, summary = lines(judged)
    assert [{k: v for k, v in row.items() if k in printed[0]} for row in folds] == printed[:-1]  # nothing retrained
    truth = {p: "Parasitized" for p in planted}
    kept = [row for row in pooled if row["path"] != left_out]
    assert summary["pooled_given_n"] == len(pooled) and summary["pooled_judged_n"] == len(pooled) - 1
    assert summary["pooled_judge_differs"] == len(planted) == sum(row["judge_differs"] for row in folds)
    assert summary["pooled_given_accuracy"] == pytest.approx(
        sum(r["predicted"] == r["label"] for r in pooled) / len(pooled), abs=1e-4)
    assert summary["pooled_judged_accuracy"] == pytest.approx(
        sum(r["predicted"] == truth.get(r["path"], r["label"]) for r in kept) / len(kept), abs=1e-4)
    assert summary["pooled_judged_roc_auc"] == pytest.approx(
        _auc([truth.get(r["path"], r["label"]) for r in kept], kept), abs=1e-4)
    assert summary["pooled_given_roc_auc"] == pytest.approx(_auc([r["label"] for r in pooled], pooled), abs=1e-4)
    assert summary["pooled_judged_accuracy"] != summary["pooled_given_accuracy"]
    assert "judged labels" in judged.stderr  # the side-by-side table

    relabelled = tmp_path / "relabelled"  # trained with the same file on the same folds: tested with its labels
    trained = bench("crossval.py", "--data", images, "--split", out / "folds.csv", "--out", relabelled, *QUICK,
                    "--only", "0", "--relabel", judge, "--judge", judge, env=env)
    (row, summary) = lines(trained)
    assert (relabelled / "folds.csv").read_bytes() == (out / "folds.csv").read_bytes()
    tested = read_rows(relabelled / "fold0" / "test" / "predictions.csv")
    assert {r["path"]: r["label"] for r in tested if r["path"] in truth} == {
        p: "Parasitized" for p in planted if p in {r["path"] for r in tested}}
    assert left_out not in {r["path"] for r in tested}  # excluded from training and testing
    assert row["judged_accuracy"] == row["accuracy"] and row["judged_roc_auc"] == row["roc_auc"]
    assert row["given_accuracy"] == pytest.approx(
        sum(r["predicted"] == r["given_label"] for r in tested) / len(tested), abs=1e-4)


@pytest.mark.parametrize("args, message", [
    (["--judge", "{tmp}/missing.csv"], "cannot be read"),
    (["--judge", "{tmp}/bad.csv"], "has no class"),
    (["--relabel", "{tmp}/missing.csv"], "does not exist"),
    (["--split", "{tmp}/missing.csv"], "does not exist"),
])
def test_crossval_refuses_missing_or_bad_label_files_before_training(cells, tmp_path, args, message):
    images, env = cells
    (tmp_path / "bad.csv").write_text("path,label\nParasitized/whatever.png,Healthy\n")
    result = bench("crossval.py", "--data", images, "--folds", "2", "--out", tmp_path / "cv",
                   *[a.format(tmp=tmp_path) for a in args], env=env)
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "cv").exists()
