"""``--relabel FILE`` through ``cellscreen.cli.main``: the counts, the split manifest, training and evaluation
against both label sets, and the refusals (issue 35)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.clitools import run_here
from tests.conftest import make_malaria_like

# flipped to the other class, and left out
FLIPPED = ["Parasitized/C1P9ThinF_IMG_2015_cell_0.png", "Parasitized/C2P9ThinF_IMG_2015_cell_1.png",
           "Uninfected/C3P9ThinF_IMG_2015_cell_2.png"]
EXCLUDED = "Uninfected/C4P9ThinF_IMG_2015_cell_0.png"


def write_relabels(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("path,label\n" + "".join(f"{cell},{label}\n" for cell, label in rows))
    return path


def other(cell: str) -> str:
    return "Uninfected" if cell.startswith("Parasitized/") else "Parasitized"


@pytest.fixture
def relabel_file(tmp_path) -> Path:
    return write_relabels(tmp_path / "fixes.csv", [(c, other(c)) for c in FLIPPED] + [(EXCLUDED, "exclude")])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_data_info_counts_the_relabelled_cells(malaria_like, relabel_file, tmp_path):
    plain = run_here("data", "info", str(malaria_like), "-d", "malaria-nih", "--out", str(tmp_path / "a.json"), "-q")
    fixed = run_here("data", "info", str(malaria_like), "-d", "malaria-nih", "--relabel", str(relabel_file),
                     "--out", str(tmp_path / "b.json"), "-q")
    assert plain.returncode == 0 and fixed.returncode == 0, fixed.stderr
    before, after = (json.loads((tmp_path / name).read_text()) for name in ("a.json", "b.json"))
    assert before["classes"] == {"Parasitized": 36, "Uninfected": 36}
    # two parasitized cells become uninfected, one uninfected becomes parasitized, one uninfected is left out
    assert after["classes"] == {"Parasitized": 35, "Uninfected": 36}
    assert after["images"] == 71 and after["files"] == 72
    assert after["relabels"]["files"] == {str(relabel_file.resolve()): sha256(relabel_file)}
    assert (after["relabels"]["changed"], after["relabels"]["excluded"]) == (3, 1)
    assert "relabels" not in before
    assert "labels: relabelled by fixes.csv" in fixed.stdout and "3 cell(s) changed, 1 excluded" in fixed.stdout


def test_the_later_relabel_file_wins(malaria_like, relabel_file, tmp_path):
    undo = write_relabels(tmp_path / "undo.csv", [(FLIPPED[0], "Parasitized")])
    result = run_here("data", "info", str(malaria_like), "-d", "malaria-nih", "--relabel", str(relabel_file),
                      "--relabel", str(undo), "--out", str(tmp_path / "c.json"), "-q")
    assert result.returncode == 0, result.stderr
    after = json.loads((tmp_path / "c.json").read_text())
    assert after["classes"] == {"Parasitized": 36, "Uninfected": 35}
    assert list(after["relabels"]["files"]) == [str(relabel_file.resolve()), str(undo.resolve())]


def test_split_manifest_records_the_relabels_and_their_labels(malaria_like, relabel_file, tmp_path):
    out = tmp_path / "split.csv"
    result = run_here("split", str(malaria_like), "-d", "malaria-nih", "--relabel", str(relabel_file),
                      "--out", str(out), "-q")
    assert result.returncode == 0, result.stderr
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["relabels"]["files"] == {str(relabel_file.resolve()): sha256(relabel_file)}
    rows = {line.split(",")[0]: line.split(",")[1] for line in out.read_text().splitlines()[1:]}
    assert EXCLUDED not in rows and len(rows) == 71
    assert all(rows[cell] == other(cell) for cell in FLIPPED)
    plain = tmp_path / "plain.csv"
    assert run_here("split", str(malaria_like), "-d", "malaria-nih", "--out", str(plain), "-q").returncode == 0
    assert "relabels" not in json.loads(plain.with_suffix(".json").read_text())


@pytest.mark.parametrize("rows, message", [
    ([("Parasitized/no_such_cell.png", "Uninfected")], "is not a file of the dataset"),
    ([(FLIPPED[0], "Gametocyte")], "the dataset has no class 'Gametocyte'"),
    ([(FLIPPED[0], "Uninfected"), (FLIPPED[0], "exclude")], "is named twice in one file"),
])
def test_a_bad_relabel_file_is_refused_in_one_line(malaria_like, tmp_path, rows, message):
    bad = write_relabels(tmp_path / "bad.csv", rows)
    for command in (["data", "info"], ["split", "--out", str(tmp_path / "s.csv")]):
        result = run_here(*command, str(malaria_like), "-d", "malaria-nih", "--relabel", str(bad), "-q")
        assert result.returncode == 2
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "s.csv").exists()


def test_a_missing_relabel_file_is_refused(malaria_like, tmp_path):
    result = run_here("data", "info", str(malaria_like), "-d", "malaria-nih", "--relabel",
                      str(tmp_path / "nowhere.csv"), "-q")
    assert result.returncode == 2 and "cannot be read" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def relabelled_run(tmp_path_factory):
    """A tiny run trained on a hold-out split made with a relabel file; the split, the file and the run."""
    root = tmp_path_factory.mktemp("relabel")
    slides = {f"C{n}": {"Parasitized": 8, "Uninfected": 8} for n in range(1, 11)}
    cells = make_malaria_like(root / "data", slides, learnable=True, size=(16, 16))
    fixes = write_relabels(root / "fixes.csv", [(c, other(c)) for c in FLIPPED] + [(EXCLUDED, "exclude")])
    split = root / "split.csv"
    made = run_here("split", str(cells), "-d", "malaria-nih", "--relabel", str(fixes), "--val", "0.2",
                    "--test", "0.3", "--out", str(split), "-q")
    assert made.returncode == 0, made.stderr
    trained = run_here("train", "--split", str(split), "--input-size", "16", "--epochs", "2", "--batch-size", "16",
                       "--bootstrap", "50", "--out", str(root / "run"), "-q")
    assert trained.returncode == 0, trained.stderr
    return {"root": root, "cells": cells, "fixes": fixes, "split": split, "run": root / "run",
            "stdout": trained.stdout}


def test_train_applies_the_manifests_relabels_and_records_them(relabelled_run):
    run, fixes = relabelled_run["run"], relabelled_run["fixes"]
    recorded = {str(fixes.resolve()): sha256(fixes)}
    assert json.loads((run / "model.json").read_text())["relabels"]["files"] == recorded
    assert json.loads((run / "split.json").read_text())["relabels"]["files"] == recorded
    assert str(fixes.resolve()) in (run / "config.yaml").read_text()
    test = json.loads((run / "test" / "metrics.json").read_text())
    assert test["relabels"]["files"] == recorded
    assert test["given_labels"]["metrics"]["n"] == test["metrics"]["n"]
    assert "folder's labels" in relabelled_run["stdout"] and "labels: relabelled by fixes.csv" in relabelled_run["stdout"]


def test_evaluate_reports_both_label_sets(relabelled_run, tmp_path):
    run, split = relabelled_run["run"], relabelled_run["split"]
    result = run_here("evaluate", str(run), "--split", str(split), "--subset", "test", "--bootstrap", "50",
                      "--out", str(tmp_path / "eval"), "-q")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    given = metrics["given_labels"]
    assert metrics["relabels"]["files"] == {str(relabelled_run["fixes"].resolve()): sha256(relabelled_run["fixes"])}
    assert set(given["intervals"]) == set(metrics["intervals"])
    # the relabelled cells of the test part are the only difference between the two label sets
    rows = [line.split(",") for line in (tmp_path / "eval" / "predictions.csv").read_text().splitlines()]
    assert rows[0][-1] == "given_label"
    differ = {row[0] for row in rows[1:] if row[2] != row[-1]}
    assert differ == {cell for cell in FLIPPED if cell in {row[0] for row in rows[1:]}}
    assert given["cells_relabelled"] == len(differ)
    assert "Against two label sets" in (tmp_path / "eval" / "report.md").read_text()
    assert "folder's labels" in result.stdout


def test_evaluate_without_relabels_is_unchanged(relabelled_run, tmp_path):
    result = run_here("evaluate", str(relabelled_run["run"]), str(relabelled_run["cells"]), "-d", "malaria-nih",
                      "--bootstrap", "0", "--out", str(tmp_path / "eval"), "-q")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert "given_labels" not in metrics and "relabels" not in metrics
    assert "given_label" not in (tmp_path / "eval" / "predictions.csv").read_text().splitlines()[0]
    assert "folder's labels" not in result.stdout


def test_other_relabels_than_the_manifests_are_refused(relabelled_run, tmp_path):
    other_file = write_relabels(tmp_path / "other.csv", [(FLIPPED[0], other(FLIPPED[0]))])
    for command in (["train", "--epochs", "1", "--out", str(tmp_path / "r")],
                    ["evaluate", str(relabelled_run["run"]), "--subset", "test", "--out", str(tmp_path / "e")]):
        result = run_here(*command, "--split", str(relabelled_run["split"]), "--relabel", str(other_file), "-q")
        assert result.returncode == 2
        assert "contradicts" in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    # the same file given again is no contradiction
    same = run_here("evaluate", str(relabelled_run["run"]), "--split", str(relabelled_run["split"]), "--subset",
                    "test", "--relabel", str(relabelled_run["fixes"]), "--bootstrap", "0", "--out",
                    str(tmp_path / "e2"), "-q")
    assert same.returncode == 0, same.stderr


def test_compare_reports_both_label_sets(learnable_cells, relabel_file_for, tmp_path):
    fixes = relabel_file_for(tmp_path)
    out = tmp_path / "cmp"
    result = run_here("compare", "lenet5", "-d", "malaria-nih", "--data", str(learnable_cells), "--protocol", "kfold",
                      "--folds", "3", "--set", "epochs=1", "--set", "input_size=16", "--set", "batch_size=16",
                      "--bootstrap", "20", "--relabel", str(fixes), "--out", str(out), "-q")
    assert result.returncode == 0, result.stderr
    results = json.loads((out / "comparison_results.json").read_text())
    assert results["relabels"]["files"] == {str(fixes.resolve()): sha256(fixes)}
    given = results["given_labels"]["lenet5"]
    assert given["metrics"]["n"] == results["metrics"]["lenet5"]["n"] == 239  # every cell but the excluded one
    assert given["cells_relabelled"] == 3 and set(given["intervals"]) >= {"accuracy", "roc_auc"}
    assert json.loads((out / "split.json").read_text())["relabels"] == results["relabels"]
    page = (out / "report.html").read_text()
    assert "id='given-labels'" in page and "relabelled by fixes.csv" in page
    assert "The same predictions against the folder&#x27;s own labels" in page
    assert "## The same predictions against the folder's own labels" in (out / "report.md").read_text()


@pytest.fixture
def relabel_file_for():
    def make(folder: Path) -> Path:
        return write_relabels(folder / "fixes.csv", [(c, other(c)) for c in FLIPPED] + [(EXCLUDED, "exclude")])
    return make


def test_svm_and_cache_take_relabels_on_a_fresh_split_and_on_one_made_without(relabelled_run, tmp_path):
    cells, fixes = relabelled_run["cells"], relabelled_run["fixes"]
    recorded = {str(fixes.resolve()): sha256(fixes)}
    fresh = run_here("svm", str(cells), "-d", "malaria-nih", "--relabel", str(fixes), "--bootstrap", "0",
                     "--out", str(tmp_path / "svm"), "-q")
    assert fresh.returncode == 0, fresh.stderr
    assert json.loads((tmp_path / "svm" / "model.json").read_text())["relabels"]["files"] == recorded
    assert json.loads((tmp_path / "svm" / "split.json").read_text())["relabels"]["files"] == recorded
    # a split of the folder's own labels, relabelled when the run is given the file: the groups stay put
    plain = tmp_path / "plain.csv"
    assert run_here("split", str(cells), "-d", "malaria-nih", "--out", str(plain), "-q").returncode == 0
    later = run_here("svm", "--split", str(plain), "--relabel", str(fixes), "--bootstrap", "0",
                     "--out", str(tmp_path / "svm2"), "-q")
    assert later.returncode == 0, later.stderr
    rows = (tmp_path / "svm2" / "split.csv").read_text().splitlines()
    assert len(rows) == len(plain.read_text().splitlines()) - 1 and not any(EXCLUDED in row for row in rows)
    assert f"{FLIPPED[0]},{other(FLIPPED[0])}," in "\n".join(rows)
    assert json.loads((tmp_path / "svm2" / "split.json").read_text())["relabels"]["files"] == recorded
    cached = run_here("cache", str(cells), "-d", "malaria-nih", "--size", "16", "--relabel", str(fixes), "-q")
    assert cached.returncode == 0, cached.stderr
    assert "159" in cached.stdout  # every cell but the excluded one
