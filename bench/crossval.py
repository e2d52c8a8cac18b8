"""Slide-disjoint k-fold cross-validation of a training preset, fold by fold.

    python bench/crossval.py --preset default --dataset malaria-nih --folds 5 --out runs/cv/default
    python bench/crossval.py --split runs/cv/default/folds.csv --out runs/cv/relabelled \
        --relabel relabelled-fuhad2020.csv --judge relabelled-fuhad2020.csv

Makes (or reuses, or with ``--split`` copies) a k-fold split by group, runs
`cellscreen train --fold K` for each fold (a finished fold is not run again),
and prints one JSON line per fold with its test metrics and training time,
then the mean and spread.  ``--relabel FILE`` trains (and tests) with a
relabel file's labels.  ``--judge FILE`` also scores every fold's test
predictions against the folder's own labels and against FILE's (cells it
excludes left out), per fold and pooled over the folds, side by side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

KEYS = ("accuracy", "roc_auc", "sensitivity", "specificity", "f1", "mcc", "balanced_accuracy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--dataset", default="malaria-nih")
    parser.add_argument("--data", default=None)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--only", type=int, nargs="*", help="run only these folds")
    parser.add_argument("--out", required=True)
    parser.add_argument("--split", type=Path, help="use this k-fold manifest (copied to OUT/folds.csv) instead of "
                        "making one, so that several runs share the same folds")
    parser.add_argument("--relabel", action="append", default=[], metavar="FILE",
                        help="train and test with this relabel file's labels (repeatable, the later wins)")
    parser.add_argument("--judge", action="append", default=[], metavar="FILE",
                        help="also score each fold's test predictions against this relabel file's labels "
                             "(repeatable, the later wins), beside the folder's own labels")
    parser.add_argument("--set", action="append", default=[],
                        help="extra FIELD=VALUE settings; {fold} in VALUE becomes the fold's number")
    args = parser.parse_args()
    cellscreen = str(Path(sys.executable).with_name("cellscreen"))
    out = Path(args.out)
    judge = load_judge(args.judge, dataset=args.dataset, data=args.data)
    relabel = [str(Path(f).resolve()) for f in args.relabel]
    for file in relabel:
        if not Path(file).is_file():
            refuse(f"relabel file {file} does not exist: give an existing --relabel FILE")
    settings = {"preset": args.preset, "dataset": args.dataset, "data": args.data, "folds": args.folds,
                "set": args.set, **({"relabel": relabel} if relabel else {})}
    split = out / "folds.csv"
    if args.split is not None:
        check_same_split(args.split, split)
    claim_out(out, "crossval.json", settings)
    data = ["--data", args.data] if args.data else []
    if args.split is not None and not split.exists():
        split.write_bytes(args.split.read_bytes())
    if not split.exists():
        subprocess.run([cellscreen, "split", "-d", args.dataset, *data, "--method", "kfold", "--folds",
                        str(args.folds), "--seed", "0", "--out", str(split), "-q"], check=True)
    results, runs = [], []
    for fold in args.only if args.only is not None else range(args.folds):
        run = out / f"fold{fold}"
        seconds = train_fold(cellscreen, run, dataset=args.dataset, data=args.data, preset=args.preset,
                             split=split, fold=fold, settings=args.set, relabel=relabel)
        row = fold_row(run / "test" / "metrics.json", seconds, preset=args.preset, fold=fold)
        if judge is not None:
            row.update(judge_fold(run, judge))
        results.append(row)
        runs.append(run)
        print(json.dumps(row), flush=True)
    summary = summarise(results, preset=args.preset)
    if judge is not None:
        summary.update(judge_pooled(runs, judge))
    print(json.dumps(summary), flush=True)
    if judge is not None:
        print(side_by_side(summary), file=sys.stderr)


def refuse(message: str) -> None:
    """Bad input: one line on stderr and exit status 2."""
    print(message, file=sys.stderr)
    sys.exit(2)


def check_same_split(given: Path, copy: Path) -> None:
    """Refuse a ``--split`` that is missing, or that differs from the copy an earlier run of ``out`` made."""
    if not given.is_file():
        refuse(f"split manifest {given} does not exist: give a k-fold manifest (bench/crossval.py's folds.csv)")
    if copy.exists() and copy.read_bytes() != given.read_bytes():
        refuse(f"{copy} holds another split than {given}: give another --out")


def load_judge(files: list[str], *, dataset: str, data: str | None):
    """The relabel files to judge by (the library's reading: a file naming a missing cell or an unknown class
    is refused in one line), or None when none is given."""
    if not files:
        return None
    # keeps a plain cross-validation light: the dataset profiles and relabel reading only when judging
    from cellscreen.data.sources import get_profile, resolve_dataset_dir
    from cellscreen.errors import UserError
    from cellscreen.labels.relabel import load_relabels

    try:
        profile = get_profile(dataset)
        root = resolve_dataset_dir(profile, data)
        return load_relabels(files, dataset_root=root, classes=profile.labels)
    except UserError as exc:
        refuse(f"--judge: {exc}")


def fold_predictions(run: Path) -> dict:
    """A fold's test predictions (``run/test/predictions.csv``): paths, the labels it was tested with, the
    folder's own labels (``given_label`` when it was relabelled), probabilities, and the run's classes,
    positive class and decision threshold (``run/test/metrics.json``)."""
    import csv  # only when judging

    result = json.loads((run / "test" / "metrics.json").read_text())
    with (run / "test" / "predictions.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    classes = result["classes"]
    return {"paths": [r["path"] for r in rows], "tested": [r["label"] for r in rows],
            "given": [r.get("given_label") or r["label"] for r in rows],
            "proba": np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows]).reshape(len(rows), len(classes)),
            "classes": classes, "positive": result.get("positive_class"),
            "threshold": result.get("decision_threshold", 0.5)}


def label_set_scores(predictions: dict, judge) -> dict:
    """Accuracy and ROC AUC of ``predictions`` against the folder's own labels (``given_``) and against the
    judge's (``judged_``: a cell it names takes its label, one it excludes is left out)."""
    from cellscreen.evaluate.metrics import compute_metrics  # only when judging: scikit-learn
    from cellscreen.labels.relabel import EXCLUDE

    classes = predictions["classes"]
    judged = [judge.labels.get(path, given) for path, given in zip(predictions["paths"], predictions["given"])]
    keep = np.array([label != EXCLUDE for label in judged], dtype=bool)
    scores = {}
    for name, labels, rows in (("given", predictions["given"], np.ones(len(keep), dtype=bool)),
                               ("judged", judged, keep)):
        y = np.array([classes.index(label) for label, kept in zip(labels, rows) if kept], dtype=np.int64)
        metrics = compute_metrics(y, predictions["proba"][rows], classes=classes, positive=predictions["positive"],
                                  threshold=predictions["threshold"])
        scores.update({f"{name}_accuracy": round(metrics["accuracy"], 4),
                       f"{name}_roc_auc": round(metrics["roc_auc"], 4), f"{name}_n": metrics["n"]})
    scores["judge_differs"] = int(sum(j != g for j, g, k in zip(judged, predictions["given"], keep) if k))
    return scores


def judge_fold(run: Path, judge) -> dict:
    """One fold's scores against both label sets."""
    return label_set_scores(fold_predictions(run), judge)


def judge_pooled(runs: list[Path], judge) -> dict:
    """The folds' test predictions pooled (each cell tested once) and scored against both label sets."""
    parts = [fold_predictions(run) for run in runs]
    if not parts:
        return {}
    pooled = {**parts[0], "paths": [p for part in parts for p in part["paths"]],
              "tested": [t for part in parts for t in part["tested"]],
              "given": [g for part in parts for g in part["given"]],
              "proba": np.concatenate([part["proba"] for part in parts])}
    return {f"pooled_{key}": value for key, value in label_set_scores(pooled, judge).items()}


def side_by_side(summary: dict) -> str:
    """The pooled scores as a two-column table for the terminal."""
    lines = [f"{'pooled over ' + str(summary['folds']) + ' folds':<24}{'given labels':>14}{'judged labels':>15}"]
    for key in ("n", "accuracy", "roc_auc"):
        given, judged = summary.get(f"pooled_given_{key}"), summary.get(f"pooled_judged_{key}")
        lines.append(f"{key:<24}{given:>14}{judged:>15}")
    return "\n".join(lines)


def train_fold(cellscreen: str, run: Path, *, dataset: str, data: str | None, preset: str, split: Path, fold: int,
               settings: list[str], relabel: list[str] = ()) -> float | None:
    """`cellscreen train --fold FOLD` into ``run``, unless ``run`` holds its test metrics already; the wall
    seconds it took (kept in ``run/wall_seconds.txt``), or None when that is not known.
    ``{fold}`` in a setting's value stands for the fold's number (e.g. a teacher run per fold); ``relabel``
    files are given to it with ``--relabel``."""
    seconds = run / "wall_seconds.txt"
    if (run / "test" / "metrics.json").exists():
        return recorded_seconds(run)
    start = time.perf_counter()
    command = [cellscreen, "train", "-d", dataset, *(["--data", data] if data else []), "--preset", preset,
               "--split", str(split), "--fold", str(fold), "--out", str(run), "-q", "--overwrite"]
    for file in relabel:
        command += ["--relabel", str(file)]
    for assignment in settings:
        command += ["--set", assignment.replace("{fold}", str(fold))]
    subprocess.run(command, check=True)
    took = round(time.perf_counter() - start, 1)
    seconds.write_text(f"{took}\n")
    return took


def recorded_seconds(run: Path) -> float | None:
    """The training seconds kept in ``run/wall_seconds.txt``; None when missing or unreadable."""
    try:
        return float((run / "wall_seconds.txt").read_text())
    except (OSError, ValueError):
        return None


def claim_out(out: Path, name: str, settings: dict) -> None:
    """Record the settings of the runs in ``out`` (as ``out/name``), or refuse an ``out`` filled with other
    settings: finished folds are reused, so their figures must be of these settings. A folder from before
    this record existed is taken as it is."""
    record = out / name
    if record.exists():
        try:
            made = json.loads(record.read_text())
        except (OSError, ValueError) as exc:
            sys.exit(f"{record} cannot be read ({exc}); the settings of the runs in {out} are unknown: "
                     "give another --out")
        if made != settings:
            sys.exit(f"{out} holds runs of other settings ({record}): give another --out")
    out.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(settings, indent=2) + "\n")


def fold_row(metrics_path: Path, seconds: float | None, **labels) -> dict:
    """One fold's line: its test metrics, rounded, and the training time."""
    metrics = json.loads(metrics_path.read_text())["metrics"]
    return {**labels, **{k: round(metrics[k], 4) for k in KEYS}, "n_test": metrics["n"],
            "wall_seconds": round(seconds, 1) if seconds else None}


def summarise(results: list[dict], **labels) -> dict:
    """The mean and the lowest value of each metric over the folds."""
    summary = {**labels, "folds": len(results)}
    for key in KEYS + ("wall_seconds",):
        values = [r[key] for r in results if r[key] is not None]
        if values:
            summary[f"{key}_mean"] = round(statistics.fmean(values), 4)
            summary[f"{key}_min"] = round(min(values), 4)
    return summary


if __name__ == "__main__":
    main()
