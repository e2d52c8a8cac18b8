"""Cross-validate an ensemble of cross-validated runs, fold by fold.

    python bench/crossval_ensemble.py runs/cv/a runs/cv/b --out runs/cv/ens-ab

Each argument is a folder that `bench/crossval.py` filled (``fold0``,
``fold1``, ... and ``folds.csv``); all must hold the same split.  For each fold
the members' runs of that fold become one ensemble (`cellscreen ensemble`),
which is evaluated on the fold's test cells (`cellscreen evaluate`).  Prints
one JSON line per fold, with the members' summed training time, then the mean
and lowest value, as `bench/crossval.py` does.  ``--relabel FILE`` evaluates
with a relabel file's labels (give the files the members trained with);
``--judge FILE`` scores each fold and the pooled folds against the folder's
labels and FILE's, side by side, as `bench/crossval.py --judge` does.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

from crossval import claim_out, fold_row, judge_fold, judge_pooled, load_judge, recorded_seconds, refuse, \
    side_by_side, summarise


def _split_of(member: Path) -> Path:
    split = member / "folds.csv"
    if not split.exists():
        sys.exit(f"{member} holds no folds.csv: give folders that bench/crossval.py filled")
    return split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("members", nargs="+", type=Path, help="cross-validation folders, one per member")
    parser.add_argument("--dataset", default="malaria-nih")
    parser.add_argument("--data", default=None)
    parser.add_argument("--tta", action="store_true", help="average the 8 rotations/flips of each cell too")
    parser.add_argument("--relabel", action="append", default=[], metavar="FILE",
                        help="evaluate with this relabel file's labels (repeatable, the later wins)")
    parser.add_argument("--judge", action="append", default=[], metavar="FILE",
                        help="also score each fold against this relabel file's labels, beside the folder's own")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    if len(args.members) < 2:
        sys.exit("an ensemble needs at least two members")
    judge = load_judge(args.judge, dataset=args.dataset, data=args.data)
    relabel = [str(Path(f).resolve()) for f in args.relabel]
    for file in relabel:
        if not Path(file).is_file():
            refuse(f"relabel file {file} does not exist: give an existing --relabel FILE")
    splits = [_split_of(m) for m in args.members]
    digests = {hashlib.sha256(s.read_bytes()).hexdigest() for s in splits}
    if len(digests) > 1:
        sys.exit("the members were cross-validated on different splits (their folds.csv differ): "
                 "an ensemble of them would test some cells a member trained on")
    cellscreen = str(Path(sys.executable).with_name("cellscreen"))
    data = ["--data", args.data] if args.data else []
    folds = sorted(int(p.name[4:]) for p in args.members[0].glob("fold*") if p.name[4:].isdigit())
    if not folds:
        sys.exit(f"{args.members[0]} holds no fold folders (fold0, fold1, ...): run bench/crossval.py first")
    claim_out(args.out, "ensemble.json", {"members": [str(m.resolve()) for m in args.members], "tta": args.tta,
                                          **({"relabel": relabel} if relabel else {})})
    results, evaluated = [], []
    for fold in folds:
        runs = [m / f"fold{fold}" for m in args.members]
        missing = [str(r) for r in runs if not (r / "model.json").exists()]
        if missing:
            print(f"fold {fold} left out: no finished run in {', '.join(missing)}", file=sys.stderr)
            continue
        ensemble, evaluation = args.out / f"fold{fold}", args.out / f"fold{fold}" / "test"
        metrics_path = evaluation / "metrics.json"
        if not metrics_path.exists():
            subprocess.run([cellscreen, "ensemble", *map(str, runs), "--out", str(ensemble), "--overwrite"],
                           check=True, stdout=subprocess.DEVNULL)
            subprocess.run([cellscreen, "evaluate", str(ensemble), "-d", args.dataset, *data, "--split",
                            str(splits[0]), "--fold", str(fold), "--bootstrap", "0", "-q", "--out",
                            str(evaluation), *(["--tta"] if args.tta else []),
                            *[option for file in relabel for option in ("--relabel", file)]],
                           check=True, stdout=subprocess.DEVNULL)
        seconds = [recorded_seconds(r) for r in runs]
        row = fold_row(metrics_path, None if None in seconds else sum(seconds),
                       members=len(runs), fold=fold)
        if judge is not None:
            row.update(judge_fold(ensemble, judge))
        results.append(row)
        evaluated.append(ensemble)
        print(json.dumps(row), flush=True)
    summary = summarise(results, members=[str(m) for m in args.members])
    if judge is not None:
        summary.update(judge_pooled(evaluated, judge))
    print(json.dumps(summary), flush=True)
    if judge is not None:
        print(side_by_side(summary), file=sys.stderr)


if __name__ == "__main__":
    main()
