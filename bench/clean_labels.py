"""Leave likely mislabelled training cells out (or flip them), then train: slide-disjoint, fold by fold.

    python bench/clean_labels.py --split runs/cv/d64sc/folds.csv --out runs/cv/clean64 --preset default
    python bench/clean_labels.py --split runs/cv/d64sc/folds.csv --out runs/cv/flip64 --rank cleanlab \
        --action flip --judge relabelled-fuhad2020.csv

For each outer fold K of a k-fold manifest, the other folds' cells (training
and validation, never the test fold) are split again by slide into
``--inner`` folds; a model of ``--inner-preset`` is trained on each inner
fold's complement and predicts the inner fold, so every training cell gets a
probability from a model that never saw it. Cells whose own label gets less
than ``--below`` (``--rank below``), or the cells cleanlab's confident
learning flags from those probabilities (``--rank cleanlab``, with the label
audit's ``find_suspects`` and ``--filter``), are the suspects.  With
``--action prune`` they are left out of a copy of the manifest (the test fold
keeps every cell), and ``cellscreen train --fold K`` runs on that copy; with
``--action flip`` the fold trains on the outer manifest with a relabel file
(``flips.csv``) that gives each suspect the class the models suggest.  The
suspects are listed in ``suspects.csv`` with their probabilities, for review.
Nothing the test fold's slides hold is ever used to choose them.  ``--judge
FILE`` scores the final runs against a relabel file too, as
``bench/crossval.py --judge`` does.  A finished step is not run again. One
JSON line per fold, then the mean.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from crossval import claim_out, fold_row, judge_fold, judge_pooled, load_judge, refuse, side_by_side, summarise, \
    train_fold

from cellscreen.data.splits import SplitManifest, group_folds, read_manifest
from cellscreen.labels.audit import FILTERS, find_suspects
from cellscreen.labels.oof import OutOfFold
from cellscreen.labels.relabel import write_relabel_file


def _out_of_fold(predictions: list[Path]) -> OutOfFold:
    """The training cells' held-out probabilities, from the inner folds' test predictions (fold: the inner
    fold that held each cell out)."""
    paths, slides, labels, folds, rows_proba, classes = [], [], [], [], [], None
    for fold, path in enumerate(predictions):
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            classes = classes or [name[2:] for name in reader.fieldnames if name.startswith("p_")]
            for row in reader:
                paths.append(row["path"])
                slides.append(row["group"])
                labels.append(row["label"])
                folds.append(fold)
                rows_proba.append([float(row[f"p_{c}"]) for c in classes])
    return OutOfFold(paths, slides, labels, folds, classes, np.array(rows_proba, dtype=np.float64))


def _suspects(scored: OutOfFold, *, rank: str, below: float, filter_by: str) -> dict[str, tuple[float, str]]:
    """The suspect training cells: path -> (probability of its own label, the class the models suggest)."""
    labels = scored.label_indices()
    own = scored.proba[np.arange(len(scored)), labels]
    others = scored.proba.copy()
    others[np.arange(len(scored)), labels] = -1
    suggested = [scored.classes[k] for k in others.argmax(axis=1)]
    if rank == "cleanlab":
        flagged = {s.path for s in find_suspects(scored, filter_by=filter_by)[0]}
    else:
        flagged = {path for path, p in zip(scored.paths, own) if p < below}
    return {path: (float(p), s) for path, p, s in zip(scored.paths, own, suggested) if path in flagged}


def _manifest(outer: SplitManifest, rows: list[dict], **made) -> SplitManifest:
    """A manifest of ``rows`` taken from ``outer``: only the facts of ``outer`` that still hold are kept
    (not its per-fold counts), with how these rows were made."""
    kept = {key: outer.meta[key] for key in ("dataset", "root", "by", "group_kind", "leaky") if key in outer.meta}
    return SplitManifest(rows=rows, meta={**kept, "method": "kfold", "n_images": len(rows), **made})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", required=True, help="a k-fold manifest (bench/crossval.py's folds.csv)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--dataset", default="malaria-nih")
    parser.add_argument("--data", default=None)
    parser.add_argument("--preset", default="default", help="the final model's recipe")
    parser.add_argument("--inner-preset", default="default", help="the recipe that scores the training cells")
    parser.add_argument("--inner", type=int, default=4, help="inner folds over the training slides")
    parser.add_argument("--below", type=float, default=0.1,
                        help="with --rank below: the suspects are the cells whose own label gets less")
    parser.add_argument("--rank", choices=("below", "cleanlab"), default="below",
                        help="how suspects are chosen: own-label probability under --below, or cleanlab's "
                             "confident learning (--filter) on the inner folds' probabilities")
    parser.add_argument("--filter", choices=FILTERS, default="prune_by_noise_rate",
                        help="with --rank cleanlab: cleanlab's rule for how many cells to flag")
    parser.add_argument("--action", choices=("prune", "flip"), default="prune",
                        help="leave the suspects out of training, or train them as the class the models suggest")
    parser.add_argument("--judge", action="append", default=[], metavar="FILE",
                        help="also score the final runs against this relabel file's labels, beside the folder's")
    parser.add_argument("--final", default="final", help="the final run's folder in each fold's folder")
    parser.add_argument("--only", type=int, nargs="*", help="run only these outer folds")
    parser.add_argument("--set", action="append", default=[],
                        help="extra FIELD=VALUE settings for every run ({fold} becomes its fold number)")
    args = parser.parse_args()
    cellscreen = str(Path(sys.executable).with_name("cellscreen"))
    if not 0 < args.below < 1:
        refuse(f"--below is a probability between 0 and 1, not {args.below}")
    if args.inner < 2:
        refuse(f"--inner needs at least 2 folds to score every training cell, not {args.inner}")
    judge = load_judge(args.judge, dataset=args.dataset, data=args.data)
    outer = read_manifest(args.split)
    if outer.column != "fold":
        refuse(f"{args.split} is not a k-fold manifest: make one with `cellscreen split --method kfold` "
                 "or bench/crossval.py")
    folds = sorted({int(row["fold"]) for row in outer.rows})
    if unknown := sorted(set(args.only or []) - set(folds)):
        refuse(f"{args.split} has no fold {', '.join(map(str, unknown))}; its folds are {folds}")
    out = Path(args.out)
    chosen = {"below": args.below} if args.rank == "below" else {"rank": "cleanlab", "filter": args.filter}
    claim_out(out, "clean_labels.json", {"split": str(Path(args.split).resolve()), "dataset": args.dataset,
                                         "data": args.data, "inner": args.inner, "inner_preset": args.inner_preset,
                                         **chosen, "set": args.set})
    claim_out(out, f"{args.final}.json", {"preset": args.preset, **({"action": "flip"} if args.action == "flip"
                                                                     else {})})
    results, finals = [], []
    for fold in args.only if args.only is not None else folds:
        base = out / f"fold{fold}"
        rest = [row for row in outer.rows if int(row["fold"]) != fold]
        labels = np.array([row["label"] for row in rest])
        groups = np.array([row["group"] for row in rest])
        inner_of = group_folds(labels, groups, n_splits=args.inner, seed=0)
        inner = _manifest(outer, [{**row, "fold": str(i)} for row, i in zip(rest, inner_of)],
                          inner_of=f"{args.split}, all but fold {fold}")
        inner_path = base / "inner" / "folds.csv"
        if not inner_path.exists():
            inner.write(inner_path)
        scoring = [train_fold(cellscreen, base / "inner" / f"fold{j}", dataset=args.dataset, data=args.data,
                              preset=args.inner_preset, split=inner_path, fold=j, settings=args.set)
                   for j in range(args.inner)]
        scored = _out_of_fold([base / "inner" / f"fold{j}" / "test" / "predictions.csv" for j in range(args.inner)])
        suspects = _suspects(scored, rank=args.rank, below=args.below, filter_by=args.filter)
        kept = _manifest(outer, [row for row in outer.rows if row["path"] not in suspects],
                         cleaned_from=args.split, left_out=len(suspects), **chosen)
        cleaned, flips = base / "cleaned.csv", base / "flips.csv"
        if not cleaned.exists():
            with (base / "suspects.csv").open("w", newline="") as handle:
                writer = csv.writer(handle, lineterminator="\n")
                writer.writerow(["path", "label", "group", "p_own_label", "suggested"])
                for row in rest:
                    if row["path"] in suspects:
                        p_own, suggested = suspects[row["path"]]
                        writer.writerow([row["path"], row["label"], row["group"], f"{p_own:.4f}", suggested])
            write_relabel_file(flips, [(path, suggested) for path, (_, suggested) in sorted(suspects.items())])
            kept.write(cleaned)
        flip = args.action == "flip"
        final = train_fold(cellscreen, base / args.final, dataset=args.dataset, data=args.data, preset=args.preset,
                           split=Path(args.split) if flip else cleaned, fold=fold, settings=args.set,
                           relabel=[str(flips.resolve())] if flip else [])
        row = fold_row(base / args.final / "test" / "metrics.json", final, preset=args.preset, fold=fold)
        row["scoring_seconds"] = round(sum(scoring), 1) if None not in scoring else None
        row["flipped" if flip else "left_out"] = len(suspects)
        if judge is not None:
            row.update(judge_fold(base / args.final, judge))
        results.append(row)
        finals.append(base / args.final)
        print(json.dumps(row), flush=True)
    summary = summarise(results)
    if judge is not None:
        summary.update(judge_pooled(finals, judge))
    print(json.dumps(summary), flush=True)
    if judge is not None:
        print(side_by_side(summary), file=sys.stderr)


if __name__ == "__main__":
    main()
