"""An ensemble's own decision threshold: given, or chosen on the validation cells its members share, and then
used wherever a single run's is (issue 34)."""

import csv
import json
import shutil

import numpy as np
import pytest

from cellscreen.data.images import load_rgb, resize_square
from cellscreen.data.splits import read_manifest
from cellscreen.engine.inference import predict_proba
from cellscreen.engine.kinds import load_checkpoint
from cellscreen.serve.runtime import load_predictor
from tests.clitools import run_here
from tests.conftest import softened_copy


@pytest.fixture(scope="module")
def soft_members(trained_run, tmp_path_factory):
    """Two members trained on one split: the trained CNN with its classifier softened twice over (so that the
    averaged probabilities spread between 0 and 1), each with the run's split.csv beside it."""
    base = tmp_path_factory.mktemp("members")
    members = [softened_copy(trained_run.run, base / "a", 6), softened_copy(trained_run.run, base / "b", 15)]
    for member in members:
        shutil.copy2(trained_run.run / "split.csv", member / "split.csv")
    return members


def _ensemble(members, out, *options):
    made = run_here("ensemble", *map(str, members), "--out", str(out), "--workers", "0", "-q", *options)
    assert made.returncode == 0, made.stderr
    return json.loads((out / "model.json").read_text()), made.stdout


def _predictions(model, cells, out):
    done = run_here("predict", str(model), str(cells), "--workers", "0", "--out", str(out), "-q")
    assert done.returncode == 0, done.stderr
    with out.open() as handle:
        return list(csv.DictReader(handle))


def test_a_given_threshold_is_the_ensembles_own_and_predict_evaluate_and_serve_use_it(soft_members,
                                                                                       learnable_cells, tmp_path):
    plain, _ = _ensemble(soft_members, tmp_path / "plain")
    assert "decision_threshold" not in plain
    rows = _predictions(tmp_path / "plain", learnable_cells, tmp_path / "plain.csv")
    p = np.array([float(r["p_Parasitized"]) for r in rows])
    above = np.sort(p[p >= 0.5])
    threshold = round(float(above[len(above) // 2]), 4)  # half the cells called at 0.5 are not at this one
    assert 0.5 < threshold < 1

    meta, printed = _ensemble(soft_members, tmp_path / "ens", "--threshold", str(threshold))
    assert meta["decision_threshold"] == threshold and meta["decision"]["set_by"] == "given"
    assert f"decision threshold {threshold:.4f} (given)" in printed
    rows = _predictions(tmp_path / "ens", learnable_cells, tmp_path / "ens.csv")
    for r in rows:  # probabilities are written to 4 decimals: one that rounds onto the threshold may go either way
        p = float(r["p_Parasitized"])
        assert r["predicted"] == ("Parasitized" if p >= threshold else "Uninfected") or abs(p - threshold) <= 5e-5
    called = sum(r["predicted"] == "Parasitized" for r in rows)
    assert called < sum(float(r["p_Parasitized"]) >= 0.5 for r in rows)  # the threshold changed calls
    assert json.loads((tmp_path / "ens.csv.json").read_text())["decision_threshold"] == threshold

    predictor = load_predictor(tmp_path / "ens")  # what serve, screen and predict run on
    assert predictor.decision_threshold == threshold and predictor.info()["decision_threshold"] == threshold

    evaluated = run_here("evaluate", str(tmp_path / "ens"), str(learnable_cells), "-d", "malaria-nih", "--out",
                         str(tmp_path / "eval"), "--bootstrap", "0", "-q")
    assert evaluated.returncode == 0, evaluated.stderr
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["decision_threshold"] == threshold and "sensitivity" in metrics["metrics_at_default_threshold"]


def test_an_operating_point_is_chosen_on_the_validation_cells_the_members_share(soft_members, trained_run,
                                                                                 learnable_cells, tmp_path):
    meta, printed = _ensemble(soft_members, tmp_path / "ens", "--operating-point", "sensitivity=0.9")
    decision = meta["decision"]
    assert decision["set_by"] == "validation cells" and meta["decision_threshold"] == decision["threshold"]
    assert "chosen on the validation cells for sensitivity=0.9" in printed
    val = [row for row in read_manifest(trained_run.run / "split.csv").rows if row["subset"] == "val"]
    assert decision["positive_cells"] + decision["negative_cells"] == len(val)
    assert decision["positive_cells"] == sum(row["label"] == "Parasitized" for row in val)

    # by hand: the ensemble's probabilities of those cells, read from their files, reach the target there
    ensemble = load_checkpoint(tmp_path / "ens")
    config = ensemble.data_config
    images = np.stack([resize_square(load_rgb(learnable_cells / row["path"]), config.input_size,
                                     config.interpolation) for row in val])
    p = predict_proba(ensemble.model, images)[:, ensemble.classes.index("Parasitized")]
    infected = np.array([row["label"] == "Parasitized" for row in val])
    assert (p[infected] >= meta["decision_threshold"] - 1e-4).mean() >= 0.9

    # `cellscreen threshold` on the ensemble chooses the same, and a given one replaces it
    again = run_here("threshold", str(tmp_path / "ens"), "--operating-point", "sensitivity=0.9", "-q")
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "ens" / "model.json").read_text())["decision_threshold"] == pytest.approx(
        meta["decision_threshold"], abs=1e-6)
    assert run_here("threshold", str(tmp_path / "ens"), "--threshold", "0.3", "-q").returncode == 0
    assert load_predictor(tmp_path / "ens").decision_threshold == 0.3


def _on_another_split(member, out):
    """A copy of ``member`` that says it was trained on another split manifest."""
    shutil.copytree(member, out)
    meta = json.loads((out / "model.json").read_text())
    meta["split"] = {**meta["split"], "sha256": "0" * 64}
    (out / "model.json").write_text(json.dumps(meta))
    return out


def test_members_that_share_no_validation_cells_are_refused_an_operating_point(soft_members, tmp_path):
    other = _on_another_split(soft_members[1], tmp_path / "other")
    refused = run_here("ensemble", str(soft_members[0]), str(other), "--operating-point", "sensitivity=0.9",
                       "--out", str(tmp_path / "ens"), "-q")
    assert refused.returncode == 2 and "not trained on one split" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "ens").exists()

    _ensemble([soft_members[0], other], tmp_path / "ens")  # without a decision: made, and 0.5 it is
    assert load_predictor(tmp_path / "ens").decision_threshold == 0.5
    later = run_here("threshold", str(tmp_path / "ens"), "--operating-point", "sensitivity=0.9", "-q")
    assert later.returncode == 2 and "share no validation cells" in later.stderr

    bare = [tmp_path / "bare-a", tmp_path / "bare-b"]  # no split.csv beside either member
    for member, copy in zip(soft_members, bare):
        shutil.copytree(member, copy, ignore=shutil.ignore_patterns("split.csv"))
    refused = run_here("ensemble", *map(str, bare), "--operating-point", "sensitivity=0.9",
                       "--out", str(tmp_path / "bare"), "-q")
    assert refused.returncode == 2 and "split.csv" in refused.stderr and not (tmp_path / "bare").exists()
    assert run_here("ensemble", *map(str, bare), "--threshold", "1.5", "--out", str(tmp_path / "bad"),
                    "-q").returncode == 2


def test_members_own_thresholds_do_not_carry_over_and_the_user_is_told(soft_members, tmp_path):
    members = []
    for member, name in zip(soft_members, ("a", "b")):
        copy = tmp_path / name
        shutil.copytree(member, copy)
        meta = json.loads((copy / "model.json").read_text())
        (copy / "model.json").write_text(json.dumps({**meta, "decision_threshold": 0.2}))
        members.append(copy)
    meta, printed = _ensemble(members, tmp_path / "ens")
    assert "decision_threshold" not in meta and "members had their own decision thresholds (0.2000)" in printed
