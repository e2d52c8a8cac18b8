"""Training with glibc's malloc as it comes against ``cellscreen.memory.keep_freed_memory``.

    CELLSCREEN_DATA=../shared/data python bench/malloc_reuse.py --split runs/cv/c6bf/folds.csv --fold 0 --rounds 3

Runs ``bench/train_profile.py`` (a real ``cellscreen train`` of ``--preset`` on ``--limit`` cells of the
split's fold, 2 epochs) in a new process per run, with ``CELLSCREEN_KEEP_FREED_MEMORY=0`` (malloc as it
comes: large blocks from ``mmap``, given back when freed) and ``=1`` (the default: reused) in turn, for
``--rounds`` rounds.  Prints, as JSON, each run's ms per training step, seconds of validation per epoch,
and the process's user and kernel CPU seconds, and the median of each setting.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

SETTINGS = {"malloc as it comes": "0", "keep_freed_memory": "1"}


def _run(args, value: str) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    command = [sys.executable, str(Path(__file__).with_name("train_profile.py")), "--split", args.split,
               "--fold", str(args.fold), "--preset", args.preset, "--limit", str(args.limit)]
    done = subprocess.run(command, env={**os.environ, "CELLSCREEN_KEEP_FREED_MEMORY": value},
                          capture_output=True, text=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"ms_per_step": result["ms_per_step"], "validation_s_per_epoch": result["validation_s_per_epoch"],
            "user_s": round(after.ru_utime - before.ru_utime, 1), "kernel_s": round(after.ru_stime - before.ru_stime, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", required=True)
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--preset", default="seed_malaria_cnn")
    parser.add_argument("--limit", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    runs = {name: [] for name in SETTINGS}
    for _ in range(args.rounds):
        for name, value in SETTINGS.items():
            runs[name].append(_run(args, value))
            print(name, runs[name][-1], file=sys.stderr, flush=True)
    medians = {name: {key: statistics.median(r[key] for r in rs) for key in rs[0]} for name, rs in runs.items()}
    print(json.dumps({"preset": args.preset, "limit": args.limit, "runs": runs, "median": medians}))


if __name__ == "__main__":
    main()
