"""The label audit: which cells are most likely filed under the wrong class, ranked for review.

Out-of-fold probabilities (``oof.py``: no model ever scores a cell of a slide it trained on) go to
cleanlab's confident learning (Northcutt et al. 2021): ``filter.find_label_issues`` estimates how many cells
of each given class belong to each other class and flags that many, the least likely first
(``self_confidence``: the probability of the given label); ``rank.get_label_quality_scores`` gives every
cell its score.  Nothing is changed: the audit writes what a person reviews.

OUT/
  oof.csv                  every cell: path, slide, given label, held-out fold, class probabilities
  suspects.csv             the flagged cells, most suspect first: given and suggested label, score, slide
  suggested-relabel.csv    a relabel file that applies every suggestion (review it before using it)
  audit.json               the summary: settings, counts, per-class and per-slide noise estimates
  report.html              the same in one self-contained page, with the top suspects' pictures
  folds.csv, runs/         the split and the fold runs (when the audit trained)
  roundN/, oof-roundN.csv  with rounds > 1: each further round's runs, and the earlier rounds' probabilities
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cellscreen.data.index import DatasetIndex
from cellscreen.errors import UserError
from cellscreen.files import atomic_write
from cellscreen.labels.oof import OutOfFold, out_of_fold_probabilities, read_oof, write_oof
from cellscreen.labels.relabel import Relabels, relabelled_index, write_relabel_file
from cellscreen.labels.report import write_audit_report

__all__ = ["Suspect", "LabelAudit", "find_suspects", "noise_by_class", "noise_by_slide", "audit_labels",
           "run_label_audit", "read_suspects", "AUDIT_FILES"]

AUDIT_FILES = ("oof.csv", "suspects.csv", "suggested-relabel.csv", "audit.json", "report.html")
FILTERS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given",
           "low_normalized_margin", "low_self_confidence")


@dataclasses.dataclass(frozen=True)
class Suspect:
    """One flagged cell: ``rank`` 1 is the most suspect; ``score`` is its label quality (0..1, low is
    suspect: the held-out probability of its given label)."""

    rank: int
    path: str
    slide: str
    label: str
    suggested: str
    score: float
    fold: int
    probabilities: dict[str, float]


@dataclasses.dataclass
class LabelAudit:
    """What an audit found; ``to_dict()`` is ``audit.json``."""

    out_dir: Path
    classes: list[str]
    cells: int
    suspects: list[Suspect]
    per_class: list[dict]
    per_slide: list[dict]
    meta: dict

    def to_dict(self) -> dict:
        return {**self.meta, "classes": self.classes, "cells": self.cells, "flagged": len(self.suspects),
                "flagged_share": round(len(self.suspects) / max(self.cells, 1), 5),
                "per_class": self.per_class, "per_slide": self.per_slide}


def _suggestions(labels: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """The most probable class other than the given one."""
    others = proba.copy()
    others[np.arange(len(labels)), labels] = -1
    return others.argmax(axis=1)


def find_suspects(oof: OutOfFold, *, filter_by: str = "prune_by_noise_rate", max_suspects: int | None = None
                  ) -> tuple[list[Suspect], np.ndarray]:
    """The cells confident learning flags, most suspect first, and every cell's label-quality score."""
    from cleanlab.filter import find_label_issues  # cleanlab brings pandas: loaded only for an audit
    from cleanlab.rank import get_label_quality_scores

    if filter_by not in FILTERS:
        raise UserError(f"unknown filter {filter_by!r}; one of {', '.join(FILTERS)}")
    labels = oof.label_indices()
    counts = np.bincount(labels, minlength=len(oof.classes))
    if (counts == 0).any():
        empty = [c for c, n in zip(oof.classes, counts) if n == 0]
        raise UserError(f"class(es) {', '.join(empty)} have no cells: confident learning needs cells of every class")
    proba = oof.proba.astype(np.float64)
    scores = get_label_quality_scores(labels, proba, method="self_confidence")
    ranked = find_label_issues(labels, proba, filter_by=filter_by, return_indices_ranked_by="self_confidence")
    if max_suspects is not None:
        ranked = ranked[:max_suspects]
    suggested = _suggestions(labels, proba)
    suspects = [Suspect(rank=k + 1, path=oof.paths[i], slide=oof.slides[i], label=oof.labels[i],
                        suggested=oof.classes[suggested[i]], score=float(scores[i]), fold=oof.folds[i],
                        probabilities={c: float(p) for c, p in zip(oof.classes, proba[i])})
                for k, i in enumerate(ranked)]
    return suspects, scores


def noise_by_class(oof: OutOfFold, suspects: Sequence[Suspect]) -> list[dict]:
    """Per given class: cells, flagged cells and where the flags point, and confident learning's estimate
    of the share of wrong labels (from ``count.estimate_joint``: the off-diagonal of the joint
    distribution of given and true labels)."""
    from cleanlab.count import estimate_joint  # cleanlab brings pandas: loaded only for an audit

    labels = oof.label_indices()
    joint = estimate_joint(labels, oof.proba.astype(np.float64))
    rows = []
    for i, name in enumerate(oof.classes):
        cells = int((labels == i).sum())
        flagged = [s for s in suspects if s.label == name]
        given_share = float(joint[i].sum())
        noise = 1 - float(joint[i, i]) / given_share if given_share > 0 else 0.0
        rows.append({"class": name, "cells": cells, "flagged": len(flagged),
                     "flagged_share": round(len(flagged) / max(cells, 1), 5),
                     "estimated_noise_rate": round(noise, 5),
                     "estimated_wrong": round(noise * cells, 1),
                     "flagged_as": {other: sum(s.suggested == other for s in flagged)
                                    for other in oof.classes if other != name}})
    return rows


def noise_by_slide(oof: OutOfFold, suspects: Sequence[Suspect], scores: np.ndarray) -> list[dict]:
    """Per slide: cells of each given class, flagged cells, their share, and the expected number of wrong
    labels (the sum of one minus each cell's label quality).  Slides with the largest flagged share come
    first: labels are often wrong a slide (a labelling batch) at a time."""
    cells: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(oof.classes, 0))
    expected: dict[str, float] = defaultdict(float)
    for slide, label, score in zip(oof.slides, oof.labels, scores):
        cells[slide][label] += 1
        expected[slide] += 1 - float(score)
    flagged: dict[str, int] = defaultdict(int)
    for suspect in suspects:
        flagged[suspect.slide] += 1
    rows = [{"slide": slide, "cells": sum(per.values()), "per_class": per, "flagged": flagged[slide],
             "flagged_share": round(flagged[slide] / sum(per.values()), 5),
             "expected_wrong": round(expected[slide], 1)} for slide, per in cells.items()]
    rows.sort(key=lambda r: (-r["flagged_share"], -r["flagged"], r["slide"]))
    return rows


def _write_suspects(path: Path, suspects: Sequence[Suspect], classes: list[str]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["rank", "path", "slide", "label", "suggested", "label_quality", "fold",
                     *[f"p_{c}" for c in classes]])
    for s in suspects:
        writer.writerow([s.rank, s.path, s.slide, s.label, s.suggested, f"{s.score:.6f}", s.fold,
                         *[f"{s.probabilities[c]:.6f}" for c in classes]])
    atomic_write(path, buffer.getvalue())


def read_suspects(path: str | Path) -> list[Suspect]:
    """The suspects of an audit's ``suspects.csv``, in rank order."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist: is {path.parent} an audit folder (`cellscreen labels audit`)?")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        classes = [name[2:] for name in reader.fieldnames or [] if name.startswith("p_")]
        try:
            return [Suspect(rank=int(row["rank"]), path=row["path"], slide=row["slide"], label=row["label"],
                            suggested=row["suggested"], score=float(row["label_quality"]), fold=int(row["fold"]),
                            probabilities={c: float(row[f"p_{c}"]) for c in classes}) for row in reader]
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{path} is not an audit's suspects.csv ({exc})") from None


def _check_oof_matches(oof: OutOfFold, index: DatasetIndex) -> OutOfFold:
    """Keep the out-of-fold rows of cells the index holds, refusing a file made with other labels."""
    label_of = {r.path: r.label for r in index.records}
    differ = [p for p, label in zip(oof.paths, oof.labels) if p in label_of and label_of[p] != label]
    if differ:
        raise UserError(f"the out-of-fold file gives {len(differ)} cell(s) another label than the dataset (first: "
                        f"{differ[0]}): it was made with other labels; make it again with these")
    known = np.array([p in label_of for p in oof.paths])
    if not known.any():
        raise UserError("none of the out-of-fold file's cells is in this dataset: is it the right folder?")
    if not known.all():
        print(f"note: {int((~known).sum())} cell(s) of the out-of-fold file are not in the dataset (excluded or "
              "gone) and are left out of the audit")
    unscored = len(label_of) - int(known.sum())
    if unscored:
        print(f"note: {unscored} cell(s) of the dataset have no out-of-fold probability and are not audited")
    return oof.subset(known)


def audit_labels(index: DatasetIndex, *, out_dir: str | Path, folds: int = 5, preset: str = "default",
                 settings: dict | Sequence[str] | None = None, seeds: Sequence[int] = (0,), split_seed: int = 0,
                 tta: bool = True, oof: str | Path | None = None, rounds: int = 1, leave_out_by: str | None = None,
                 filter_by: str = "prune_by_noise_rate", max_suspects: int | None = None,
                 relabels: Relabels | None = None, show: int = 60, workers: int | None = None,
                 progress: bool = True) -> LabelAudit:
    """Audit the labels of ``index`` (already relabelled, if ``relabels`` were applied: they are recorded)
    and write the audit folder ``out_dir`` (see the module docstring).

    Out-of-fold probabilities come from ``folds``-fold training by slide with ``preset`` (``settings``
    override its fields; each fold once per seed in ``seeds``), or from ``oof``, an ``oof.csv`` made before
    (to rerun the ranking without training).  With ``rounds`` > 1, each further round trains the folds again
    without the previous round's suspects (they are still scored, in their own fold), so that wrong labels
    teach the models less; its runs are in ``out_dir/roundN``, the earlier probabilities in
    ``oof-roundN.csv``; ``leave_out_by`` is the cleanlab filter that picks the cells a round leaves out
    (``filter_by`` unless given; ``predicted_neq_given`` leaves out every cell the models disagree with).
    ``filter_by`` is cleanlab's rule for how many cells to flag; ``max_suspects`` caps the list; the report
    shows the ``show`` most suspect cells."""
    from cleanlab import __version__ as cleanlab_version  # cleanlab brings pandas: loaded only for an audit

    if rounds < 1:
        raise UserError(f"rounds must be 1 or more, not {rounds}")
    out_dir = Path(out_dir)
    training = {"folds": folds, "preset": preset,
                "settings": dict(settings) if isinstance(settings, dict) else list(settings or []),
                "seeds": list(seeds), "split_seed": split_seed, "tta": tta}
    arguments = {"folds": folds, "preset": preset, "settings": settings, "seeds": seeds, "split_seed": split_seed,
                 "tta": tta, "workers": workers, "progress": progress}
    if oof is not None:
        scored = _check_oof_matches(read_oof(oof), index)
        made = {"oof_from": str(oof)}
    else:
        scored = out_of_fold_probabilities(index, out_dir=out_dir, **arguments)
        made = dict(training)
    for round_number in range(2, rounds + 1):
        earlier, _ = find_suspects(scored, filter_by=leave_out_by or filter_by)
        write_oof(scored, out_dir / f"oof-round{round_number - 1}.csv")
        scored = out_of_fold_probabilities(index, out_dir=out_dir / f"round{round_number}",
                                           leave_out={s.path for s in earlier}, **arguments)
        made = {**training, "rounds": round_number, "left_out_of_training": len(earlier),
                "left_out_by": leave_out_by or filter_by, "earlier": made}
    out_dir.mkdir(parents=True, exist_ok=True)
    if oof is None or rounds > 1 or Path(oof).resolve() != (out_dir / "oof.csv").resolve():
        write_oof(scored, out_dir / "oof.csv")
    suspects, scores = find_suspects(scored, filter_by=filter_by, max_suspects=max_suspects)
    audit = LabelAudit(
        out_dir=out_dir, classes=scored.classes, cells=len(scored), suspects=suspects,
        per_class=noise_by_class(scored, suspects), per_slide=noise_by_slide(scored, suspects, scores),
        meta={"dataset": index.profile.name, "root": str(Path(index.root).resolve()),
              "group_kind": index.profile.group_kind, "slides": len(set(scored.slides)),
              "out_of_fold": made, "filter_by": filter_by, "ranked_by": "self_confidence",
              "max_suspects": max_suspects, "cleanlab": cleanlab_version,
              "relabels": relabels.describe() if relabels is not None else None},
    )
    _write_suspects(out_dir / "suspects.csv", suspects, scored.classes)
    write_relabel_file(out_dir / "suggested-relabel.csv", [(s.path, s.suggested) for s in suspects])
    atomic_write(out_dir / "audit.json", json.dumps(audit.to_dict(), indent=2) + "\n")
    write_audit_report(audit.to_dict(), suspects, out_dir / "report.html", root=Path(index.root), show=show)
    return audit


def run_label_audit(dataset: str, *, out: str | Path, data: str | None = None, relabel: Sequence[str] = (),
                    group_regex: str | None = None, folds: int = 5, preset: str = "default",
                    settings: Sequence[str] = (), seeds: Sequence[int] = (0,), oof: str | None = None,
                    rounds: int = 2, leave_out_by: str | None = "predicted_neq_given",
                    filter_by: str = "prune_by_noise_rate", max_suspects: int | None = None,
                    show: int = 60, workers: int | None = None, progress: bool = True) -> LabelAudit:
    """``cellscreen labels audit``: the audit of a dataset named as every command names one (``-d``,
    ``--data``, ``--relabel`` files applied first, ``--set FIELD=VALUE`` training settings).

    By default two rounds, the second trained without every cell the first round's models disagree with:
    on the 80 NIH development slides (default preset, 6 epochs) that flagged 356 cells, 87.6% of them
    relabelled by Fuhad et al. and 56% of those relabelled, against 147 cells (91.2%, 24%) from one round
    (bench/label_audit.py)."""
    index, relabels = relabelled_index(dataset, data=data, relabel=relabel, group_regex=group_regex,
                                       workers=workers, progress=progress)
    return audit_labels(index, out_dir=out, folds=folds, preset=preset, settings=list(settings), seeds=seeds,
                        oof=oof, rounds=rounds, leave_out_by=leave_out_by, filter_by=filter_by,
                        max_suspects=max_suspects, relabels=relabels, show=show, workers=workers, progress=progress)
