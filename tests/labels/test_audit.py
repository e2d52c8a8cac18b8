"""The audit: confident learning finds planted wrong labels from out-of-fold probabilities, writes its
files, and trains its own folds by slide when no probabilities are given."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from cellscreen.data.index import scan_dataset
from cellscreen.data.sources import get_profile
from cellscreen.errors import UserError
from cellscreen.labels.audit import AUDIT_FILES, audit_labels, read_suspects, run_label_audit
from cellscreen.labels.oof import read_oof
from cellscreen.labels.relabel import apply_relabels, load_relabels, read_relabel_rows, write_relabel_file
from tests.labels.helpers import fake_oof

PLANTED = 6


@pytest.fixture
def noisy(malaria_like, tmp_path):
    """The fake slides with ``PLANTED`` labels flipped by a relabel file, and a fake OOF that knows better."""
    index = scan_dataset(malaria_like, get_profile("malaria-nih"), progress=False, remember=False)
    true_label_of = {r.path: r.label for r in index.records}
    other = {"Parasitized": "Uninfected", "Uninfected": "Parasitized"}
    flipped = [r.path for r in index.records][1::12][:PLANTED]  # spread over the slides and both classes
    noise = write_relabel_file(tmp_path / "noise.csv", [(p, other[true_label_of[p]]) for p in flipped])
    relabels = load_relabels([noise], dataset_root=index.root, classes=index.profile.labels)
    given = apply_relabels(index, relabels)
    return given, relabels, flipped, true_label_of, fake_oof(given, true_label_of, tmp_path / "fake-oof.csv")


def test_confident_learning_finds_the_planted_wrong_labels(noisy, tmp_path):
    index, relabels, flipped, true_label_of, oof = noisy
    audit = audit_labels(index, out_dir=tmp_path / "audit", oof=oof, relabels=relabels, show=10)
    for name in AUDIT_FILES:
        assert (tmp_path / "audit" / name).is_file(), name
    assert sorted(s.path for s in audit.suspects) == sorted(flipped)
    assert [s.rank for s in audit.suspects] == list(range(1, PLANTED + 1))
    scores = [s.score for s in audit.suspects]
    assert scores == sorted(scores) and max(scores) < 0.25  # most suspect (lowest quality) first
    assert all(s.suggested == true_label_of[s.path] != s.label for s in audit.suspects)
    # the suggestions as a relabel file put every planted flip back
    rows, _ = read_relabel_rows(tmp_path / "audit" / "suggested-relabel.csv")
    assert {path: label for _, path, label in rows} == {p: true_label_of[p] for p in flipped}
    assert [s.path for s in read_suspects(tmp_path / "audit" / "suspects.csv")] == [s.path for s in audit.suspects]
    summary = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert summary["flagged"] == PLANTED and summary["cells"] == len(index.records)
    assert summary["relabels"]["changed"] == PLANTED and summary["cleanlab"] == "2.9.0"
    per_class = {row["class"]: row for row in summary["per_class"]}
    assert sum(row["flagged"] for row in per_class.values()) == PLANTED
    assert all(0 < row["estimated_noise_rate"] < 0.3 for row in per_class.values())
    per_slide = summary["per_slide"]
    assert sum(row["flagged"] for row in per_slide) == PLANTED and len(per_slide) == 12
    assert per_slide[0]["flagged_share"] >= per_slide[-1]["flagged_share"]
    assert read_oof(tmp_path / "audit" / "oof.csv").paths == read_oof(oof).paths
    report = (tmp_path / "audit" / "report.html").read_text()
    assert report.count("<figure") == PLANTED and report.count("data:image/png;base64,") == PLANTED


def test_an_oof_file_made_with_other_labels_is_refused(noisy, malaria_like, tmp_path):
    index, _, _, true_label_of, _ = noisy
    clean = scan_dataset(malaria_like, get_profile("malaria-nih"), progress=False, remember=False)
    other_labels = fake_oof(clean, true_label_of, tmp_path / "clean-oof.csv")
    with pytest.raises(UserError, match="made with other labels"):
        audit_labels(index, out_dir=tmp_path / "audit", oof=other_labels)


def test_a_per_slide_noise_batch_stands_out(malaria_like, tmp_path):
    """Every Uninfected cell of one slide filed as Parasitized: that slide leads the per-slide table."""
    index = scan_dataset(malaria_like, get_profile("malaria-nih"), progress=False, remember=False)
    true_label_of = {r.path: r.label for r in index.records}
    batch = [r.path for r in index.records if r.group == "C7" and r.label == "Uninfected"]
    noise = write_relabel_file(tmp_path / "batch.csv", [(p, "Parasitized") for p in batch])
    given = apply_relabels(index, load_relabels([noise], dataset_root=index.root, classes=index.profile.labels))
    audit = audit_labels(given, out_dir=tmp_path / "audit", oof=fake_oof(given, true_label_of, tmp_path / "o.csv"))
    assert audit.per_slide[0]["slide"] == "C7" and audit.per_slide[0]["flagged"] == len(batch)


def test_the_audit_trains_slide_disjoint_folds(learnable_cells, tmp_path):
    index = scan_dataset(learnable_cells, get_profile("malaria-nih"), progress=False, remember=False)
    audit = audit_labels(index, out_dir=tmp_path / "audit", folds=2, settings=["epochs=1", "input_size=16"],
                         progress=False)
    oof = read_oof(tmp_path / "audit" / "oof.csv")
    assert sorted(oof.paths) == sorted(r.path for r in index.records)  # every cell scored once
    fold_of_slide = {}
    for slide, fold in zip(oof.slides, oof.folds):
        assert fold_of_slide.setdefault(slide, fold) == fold  # no slide on both sides
    assert set(oof.folds) == {0, 1}
    assert np.allclose(oof.proba.sum(axis=1), 1, atol=1e-4)
    for fold in (0, 1):  # the run that scored a fold never trained on it
        with open(tmp_path / "audit" / "runs" / f"fold{fold}" / "split.csv", newline="") as handle:
            held_out = {row["path"] for row in csv.DictReader(handle) if row["fold"] == str(fold)}
        assert held_out == {p for p, f in zip(oof.paths, oof.folds) if f == fold}
    assert audit.to_dict()["out_of_fold"]["folds"] == 2
    # a second call reuses the finished folds, and refuses other settings in the same folder
    again = audit_labels(index, out_dir=tmp_path / "audit", folds=2, settings=["epochs=1", "input_size=16"],
                         progress=False)
    assert [s.path for s in again.suspects] == [s.path for s in audit.suspects]
    with pytest.raises(UserError, match="other cells, labels or settings"):
        audit_labels(index, out_dir=tmp_path / "audit", folds=2, settings=["epochs=2", "input_size=16"],
                     progress=False)


def test_a_second_round_trains_without_the_first_rounds_suspects(noisy, tmp_path):
    index, _, flipped, true_label_of, oof = noisy
    audit = audit_labels(index, out_dir=tmp_path / "audit", oof=oof, rounds=2, folds=2,
                         leave_out_by="predicted_neq_given", settings={"epochs": 1, "input_size": 16}, progress=False)
    assert (tmp_path / "audit" / "oof-round1.csv").is_file()
    assert read_oof(tmp_path / "audit" / "oof-round1.csv").paths == read_oof(oof).paths
    made = audit.to_dict()["out_of_fold"]
    assert made["rounds"] == 2 and made["left_out_of_training"] == PLANTED and made["earlier"]["oof_from"]
    assert made["left_out_by"] == "predicted_neq_given"
    scored_in_own_fold = set()
    for fold in (0, 1):
        with open(tmp_path / "audit" / "round2" / "runs" / f"fold{fold}" / "split.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert not {row["path"] for row in rows if row["fold"] != str(fold)} & set(flipped)  # taught nothing
        scored_in_own_fold |= {row["path"] for row in rows if row["fold"] == str(fold)}
    assert set(flipped) <= scored_in_own_fold
    final = read_oof(tmp_path / "audit" / "oof.csv")
    assert sorted(final.paths) == sorted(r.path for r in index.records)


def test_run_label_audit_takes_what_a_command_line_gives(noisy, malaria_like, tmp_path):
    index, _, flipped, true_label_of, oof = noisy
    other = {"Parasitized": "Uninfected", "Uninfected": "Parasitized"}
    noise = write_relabel_file(tmp_path / "noise-again.csv", [(p, other[true_label_of[p]]) for p in flipped])
    audit = run_label_audit("malaria-nih", data=str(malaria_like), relabel=[str(noise)], out=tmp_path / "cli",
                            oof=str(oof), rounds=1, progress=False)
    assert sorted(s.path for s in audit.suspects) == sorted(flipped)
    assert audit.to_dict()["relabels"]["files"] == {str(noise): audit.to_dict()["relabels"]["files"][str(noise)]}
