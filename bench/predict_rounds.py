"""Whole-process prediction against the Keras reference, the commands run in turn for several rounds.

Each round runs the reference's ``predict`` and then ``cellscreen predict`` with each engine, as whole
processes (start-up included), on the same folder, and records each one's wall and CPU time.  Running them
in turn, rather than one after the other in blocks, lets each ratio come from neighbouring runs on a
machine whose speed drifts.  Prints JSON: every run, and per engine the ratio to the reference of the same
round.

    python bench/predict_rounds.py --inputs ../shared/data/malaria-nih/cell_images \\
        --reference-python /work/.venv-keras/bin/python --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cellscreen.benchmarks import KERAS_REQUIREMENTS, REFERENCE_SCRIPT


def timed(command: list[str]) -> dict:
    """Run ``command``; its wall and CPU seconds (user + system, children included)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inputs", required=True, help="folder of cell images")
    parser.add_argument("--reference-python", default=None,
                        help=f"the Python with TensorFlow ({KERAS_REQUIREMENTS.name} in cellscreen/benchmarks/); "
                        "omit to skip the reference")
    parser.add_argument("--model", nargs="+", default=["malaria"],
                        help="one or more models; with several, each engine runs each model in every round")
    parser.add_argument("--engines", nargs="+", default=["auto", "int8"])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    cellscreen = shutil.which("cellscreen") or str(Path(sys.executable).with_name("cellscreen"))
    runs = []

    def run(what: str, command: list[str]) -> None:
        runs.append({"round": round_, "what": what, **timed(command)})
        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)

    # one model: runs are named by engine, as before; several: "model:engine"
    labelled = [(engine, model, engine if len(args.model) == 1 else f"{model}:{engine}")
                for model in args.model for engine in args.engines]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "predicted.csv"
        for round_ in range(1, args.rounds + 1):
            if args.reference_python:
                run("keras", [args.reference_python, str(REFERENCE_SCRIPT), "predict", "--inputs", args.inputs])
            for engine, model, what in labelled:
                run(what, [cellscreen, "predict", model, "--engine", engine, args.inputs, "--out", str(out),
                           "-q", "--overwrite"])
    summary = {}
    for _, _, what in labelled:
        entry = {"wall_s": [r["wall_s"] for r in runs if r["what"] == what]}
        if args.reference_python:
            reference = {r["round"]: r["wall_s"] for r in runs if r["what"] == "keras"}
            entry["over_keras"] = [round(r["wall_s"] / reference[r["round"]], 3) for r in runs if r["what"] == what]
        summary[what] = entry
    if args.reference_python:
        summary["keras"] = {"wall_s": [r["wall_s"] for r in runs if r["what"] == "keras"]}
    models = args.model[0] if len(args.model) == 1 else args.model
    print(json.dumps({"inputs": os.path.abspath(args.inputs), "model": models, "cpus": os.cpu_count(),
                      "summary": summary, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
