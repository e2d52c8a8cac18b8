import json
import re

import pytest

from cellscreen.compare.run import Entry, parse_entries
from cellscreen.errors import UserError
from tests.clitools import run


def test_entries_are_presets_models_or_both():
    assert parse_entries(["seed_malaria_cnn", "resnet18", "lenet5@seed_allnet"]) == [
        Entry("seed_malaria_cnn", "seed_malaria_cnn"), Entry("resnet18", "default", "resnet18"),
        Entry("lenet5-seed_allnet", "seed_allnet", "lenet5")]
    with pytest.raises(UserError, match="neither a preset"):
        parse_entries(["alexnet9000"])
    with pytest.raises(UserError, match="only once"):
        parse_entries(["lenet5", "lenet5"])


COMPARE = ("compare", "compact_cnn", "lenet5", "-d", "malaria-nih", "--folds", "3", "--set", "epochs=1",
           "--set", "input_size=16", "--set", "batch_size=16", "--bootstrap", "20", "-q")


def test_compare_reports_every_entry_and_resumes(learnable_cells, tmp_path):
    out = tmp_path / "cmp"
    first = run(*COMPARE, "--data", str(learnable_cells), "--out", str(out))
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("training") == 6 and "GPU available" not in first.stdout + first.stderr
    page = (out / "report.html").read_text()
    assert "compact_cnn" in page and "lenet5" in page and "LEAKY" not in page
    assert len(re.findall(r"src='data:image/png;base64,", page)) == 6  # curves, ROC, PR, matrices, samples, errors
    results = json.loads((out / "comparison_results.json").read_text())
    assert results["metrics"]["compact_cnn"]["n"] == 240  # every cell tested exactly once over the 3 folds
    assert set(results["intervals"]["lenet5"]) >= {"accuracy", "roc_auc"}
    assert "![ROC curves on the test cells](report_files/roc.png)" in (out / "report.md").read_text()

    # an interrupted comparison: one run lost its test report (as if killed after training), one never started
    (out / "runs" / "lenet5" / "fold2" / "test" / "metrics.json").unlink()
    again = run(*COMPARE, "--data", str(learnable_cells), "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("resuming") == 1 and "training" not in again.stdout
    other = run(*COMPARE[:-3], "--bootstrap", "0", "--folds", "4", "--data", str(learnable_cells), "--out", str(out))
    assert other.returncode == 2 and "other split settings" in other.stderr


def test_cell_level_comparison_needs_consent_and_is_labelled(learnable_cells, tmp_path):
    refused = run(*COMPARE, "--data", str(learnable_cells), "--out", str(tmp_path / "a"), "--by", "cell")
    assert refused.returncode == 2 and "--allow-leakage" in refused.stderr
    args = list(COMPARE)
    args[1:3] = ["lenet5"]
    leaky = run(*args, "--data", str(learnable_cells), "--out", str(tmp_path / "b"), "--by", "cell",
                "--allow-leakage", "--protocol", "holdout")
    assert leaky.returncode == 0, leaky.stderr
    page = (tmp_path / "b" / "report.html").read_text()
    assert page.count("(LEAKY)") >= 8  # next to every metric


def test_a_resumed_comparison_keeps_each_entrys_resize(tmp_path, monkeypatch):
    import dataclasses

    from cellscreen.compare import run as module
    from cellscreen.config import TrainConfig

    entry_dir = tmp_path / "runs" / "default"
    assert module._recorded_interpolation(entry_dir) is None  # nothing trained yet: the model's own
    (entry_dir / "fold0").mkdir(parents=True)
    old = "\n".join(line for line in TrainConfig().to_yaml().splitlines() if not line.startswith("interpolation"))
    (entry_dir / "fold0" / "config.yaml").write_text(old + "\n")  # written before the resize was recorded
    assert module._recorded_interpolation(entry_dir) == "bicubic"
    recorded = dataclasses.replace(TrainConfig(), interpolation="reduce-bicubic").to_yaml()
    (entry_dir / "fold0" / "config.yaml").write_text(recorded)
    assert module._recorded_interpolation(entry_dir) == "reduce-bicubic"
    # a damaged record is refused by name, not read as a default
    for damaged in ("interpolation: [bicubic\n", "- bicubic\n"):
        (entry_dir / "fold0" / "config.yaml").write_text(damaged)
        with pytest.raises(UserError, match="fold0/config.yaml"):
            module._recorded_interpolation(entry_dir)

    # the next fold is trained with it, even where the preset would pick another
    (entry_dir / "fold0" / "config.yaml").write_text(old + "\n")
    (entry_dir / "fold0" / "test").mkdir()
    (entry_dir / "fold0" / "test" / "metrics.json").write_text("{}")
    seen = []

    class Stop(Exception):
        pass

    def fake_train(config, **kwargs):
        seen.append(config.interpolation)
        raise Stop

    monkeypatch.setattr("cellscreen.engine.train.train", fake_train)
    monkeypatch.setattr(module, "_split", lambda *args, **kwargs: tmp_path / "split.csv")
    with pytest.raises(Stop):
        module.run_comparison([Entry(name="default", preset="default")], dataset="malaria-nih", out=tmp_path,
                              folds=2)
    assert seen == ["bicubic"]
