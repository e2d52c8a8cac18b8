"""Slide-disjoint k-fold cross-validation of a training preset, fold by fold.

    python bench/crossval.py --preset default --dataset malaria-nih --folds 5 --out runs/cv/default

Makes (or reuses) a k-fold split by group, runs `cellscreen train --fold K`
for each fold (a finished fold is not run again), and prints one JSON line per
fold with its test metrics and training time, then the mean and spread.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

KEYS = ("accuracy", "roc_auc", "sensitivity", "specificity", "f1", "mcc", "balanced_accuracy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--dataset", default="malaria-nih")
    parser.add_argument("--data", default=None)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--only", type=int, nargs="*", help="run only these folds")
    parser.add_argument("--out", required=True)
    parser.add_argument("--set", action="append", default=[],
                        help="extra FIELD=VALUE settings; {fold} in VALUE becomes the fold's number")
    args = parser.parse_args()
    cellscreen = str(Path(sys.executable).with_name("cellscreen"))
    out = Path(args.out)
    claim_out(out, "crossval.json", {"preset": args.preset, "dataset": args.dataset, "data": args.data,
                                     "folds": args.folds, "set": args.set})
    data = ["--data", args.data] if args.data else []
    split = out / "folds.csv"
    if not split.exists():
        subprocess.run([cellscreen, "split", "-d", args.dataset, *data, "--method", "kfold", "--folds",
                        str(args.folds), "--seed", "0", "--out", str(split), "-q"], check=True)
    results = []
    for fold in args.only if args.only is not None else range(args.folds):
        run = out / f"fold{fold}"
        seconds = train_fold(cellscreen, run, dataset=args.dataset, data=args.data, preset=args.preset,
                             split=split, fold=fold, settings=args.set)
        row = fold_row(run / "test" / "metrics.json", seconds, preset=args.preset, fold=fold)
        results.append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps(summarise(results, preset=args.preset)), flush=True)


def train_fold(cellscreen: str, run: Path, *, dataset: str, data: str | None, preset: str, split: Path, fold: int,
               settings: list[str]) -> float | None:
    """`cellscreen train --fold FOLD` into ``run``, unless ``run`` holds its test metrics already; the wall
    seconds it took (kept in ``run/wall_seconds.txt``), or None when that is not known.
    ``{fold}`` in a setting's value stands for the fold's number (e.g. a teacher run per fold)."""
    seconds = run / "wall_seconds.txt"
    if (run / "test" / "metrics.json").exists():
        return recorded_seconds(run)
    start = time.perf_counter()
    command = [cellscreen, "train", "-d", dataset, *(["--data", data] if data else []), "--preset", preset,
               "--split", str(split), "--fold", str(fold), "--out", str(run), "-q", "--overwrite"]
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
