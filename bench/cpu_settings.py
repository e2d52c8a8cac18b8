"""Training with and without the process settings of ``cellscreen/cpu.py``.

    CELLSCREEN_DATA=../shared/data python bench/cpu_settings.py --split runs/cv/c6bf/folds.csv --fold 0 --rounds 2

Runs ``bench/train_profile.py`` (a real ``cellscreen train`` of its ``--preset`` on ``--limit`` cells of
the split's fold, for ``--epochs`` epochs, default 6 here; every argument but ``--rounds`` and
``--epochs`` is handed to it as given) in a new process per run, in three settings in turn, for
``--rounds`` rounds: neither setting (``CELLSCREEN_KEEP_FREED_MEMORY=0 CELLSCREEN_FLUSH_DENORMALS=0``:
large blocks come from ``mmap`` and are given back when freed, denormal numbers are computed on), freed
memory kept, and both (the default).  Prints, as JSON, each run's ms per training step and its
optimiser part, seconds of validation per epoch, the denormal share of the optimiser's state at the
end, and the process's user and kernel CPU seconds; and the median of each setting.
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

SETTINGS = {"neither": ("0", "0"), "freed memory kept": ("1", "0"), "both (default)": ("1", "1")}


def _run(profile_args: list[str], values: tuple[str, str]) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    command = [sys.executable, str(Path(__file__).with_name("train_profile.py")), *profile_args]
    env = {**os.environ, "CELLSCREEN_KEEP_FREED_MEMORY": values[0], "CELLSCREEN_FLUSH_DENORMALS": values[1]}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-4000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"preset": result["preset"], "ms_per_step": result["ms_per_step"], "optimiser_ms": result["optimiser_ms"],
            "validation_s_per_epoch": result["validation_s_per_epoch"],
            "denormal_share": result["denormal_share_of_optimiser_state"],
            "user_s": round(after.ru_utime - before.ru_utime, 1), "kernel_s": round(after.ru_stime - before.ru_stime, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="any other argument goes to bench/train_profile.py")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    args, profile_args = parser.parse_known_args()
    profile_args += ["--epochs", str(args.epochs)]
    runs = {name: [] for name in SETTINGS}
    for _ in range(args.rounds):
        for name, value in SETTINGS.items():
            runs[name].append(_run(profile_args, value))
            print(name, runs[name][-1], file=sys.stderr, flush=True)
    medians = {name: {key: statistics.median(r[key] for r in rs) for key in rs[0] if isinstance(rs[0][key], (int, float))}
               for name, rs in runs.items()}
    print(json.dumps({"preset": runs["neither"][0]["preset"], "train_profile_args": profile_args, "runs": runs,
                      "median": medians}))


if __name__ == "__main__":
    main()
