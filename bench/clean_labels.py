"""Leave likely mislabelled training cells out, then train: slide-disjoint, fold by fold.

    python bench/clean_labels.py --split runs/cv/d64sc/folds.csv --out runs/cv/clean64 --preset default

For each outer fold K of a k-fold manifest, the other folds' cells (training
and validation, never the test fold) are split again by slide into
``--inner`` folds; a model of ``--inner-preset`` is trained on each inner
fold's complement and predicts the inner fold, so every training cell gets a
probability from a model that never saw it. Cells whose own label gets less
than ``--below`` are left out of a copy of the manifest (the test fold keeps
every cell), and ``cellscreen train --fold K`` runs on that copy. The left-out
cells are listed in ``suspects.csv`` with their probabilities, for review.
A finished step is not run again. One JSON line per fold, then the mean.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from crossval import claim_out, fold_row, summarise, train_fold

from cellscreen.data.splits import SplitManifest, group_folds, read_manifest


def _out_of_fold(predictions: list[Path]) -> dict[str, float]:
    """Each cell's probability of its own label, from the inner folds' test predictions."""
    own = {}
    for path in predictions:
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                own[row["path"]] = float(row[f"p_{row['label']}"])
    return own


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
    parser.add_argument("--below", type=float, default=0.1, help="leave out cells whose own label gets less")
    parser.add_argument("--final", default="final", help="the final run's folder in each fold's folder")
    parser.add_argument("--only", type=int, nargs="*", help="run only these outer folds")
    parser.add_argument("--set", action="append", default=[],
                        help="extra FIELD=VALUE settings for every run ({fold} becomes its fold number)")
    args = parser.parse_args()
    cellscreen = str(Path(sys.executable).with_name("cellscreen"))
    if not 0 < args.below < 1:
        sys.exit(f"--below is a probability between 0 and 1, not {args.below}")
    if args.inner < 2:
        sys.exit(f"--inner needs at least 2 folds to score every training cell, not {args.inner}")
    outer = read_manifest(args.split)
    if outer.column != "fold":
        sys.exit(f"{args.split} is not a k-fold manifest: make one with `cellscreen split --method kfold` "
                 "or bench/crossval.py")
    folds = sorted({int(row["fold"]) for row in outer.rows})
    if unknown := sorted(set(args.only or []) - set(folds)):
        sys.exit(f"{args.split} has no fold {', '.join(map(str, unknown))}; its folds are {folds}")
    out = Path(args.out)
    claim_out(out, "clean_labels.json", {"split": str(Path(args.split).resolve()), "dataset": args.dataset,
                                         "data": args.data, "inner": args.inner, "inner_preset": args.inner_preset,
                                         "below": args.below, "set": args.set})
    claim_out(out, f"{args.final}.json", {"preset": args.preset})
    results = []
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
        own = _out_of_fold([base / "inner" / f"fold{j}" / "test" / "predictions.csv" for j in range(args.inner)])
        suspects = {path for path, p in own.items() if p < args.below}
        kept = _manifest(outer, [row for row in outer.rows if row["path"] not in suspects],
                         cleaned_from=args.split, left_out=len(suspects), below=args.below)
        cleaned = base / "cleaned.csv"
        if not cleaned.exists():
            kept.write(cleaned)
            with (base / "suspects.csv").open("w", newline="") as handle:
                writer = csv.writer(handle, lineterminator="\n")
                writer.writerow(["path", "label", "group", "p_own_label"])
                for row in rest:
                    if row["path"] in suspects:
                        writer.writerow([row["path"], row["label"], row["group"], f"{own[row['path']]:.4f}"])
        final = train_fold(cellscreen, base / args.final, dataset=args.dataset, data=args.data, preset=args.preset,
                           split=cleaned, fold=fold, settings=args.set)
        row = fold_row(base / args.final / "test" / "metrics.json", final, preset=args.preset, fold=fold)
        row["scoring_seconds"] = round(sum(scoring), 1) if None not in scoring else None
        row["left_out"] = len(suspects)
        results.append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps(summarise(results)), flush=True)


if __name__ == "__main__":
    main()
