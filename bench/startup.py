"""How long each command takes to start: the heavy imports, before any work.

Each command is run as a whole process on a model folder that does not exist, so it stops with its
one-line error as soon as it has imported what it needs and tried to read the model; that time is its
start-up.  Commands are run in turn for several rounds (a drifting machine moves them all alike), and the
median of each is printed as JSON, with the heavy libraries each one imported.

    python bench/startup.py --rounds 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("torch", "lightning", "timm", "torchvision", "sklearn", "onnxruntime", "matplotlib")

# Each command as a user would type it, on a model that is not there.
COMMANDS = {
    "evaluate": ["evaluate", "{missing}", "{folder}", "--out", "{out}/eval"],
    "predict": ["predict", "{missing}", "{folder}", "--out", "{out}/p.csv"],
    "predict --engine torch": ["predict", "{missing}", "{folder}", "--out", "{out}/p.csv", "--engine", "torch"],
    "predict --engine int8": ["predict", "{missing}", "{folder}", "--out", "{out}/p.csv", "--engine", "int8"],
    "explain": ["explain", "{missing}", "{folder}", "--out", "{out}/x"],
    "export": ["export", "{missing}", "--out", "{out}/m.onnx"],
    "train": ["train", "{folder}", "--out", "{out}/run"],
}

# Runs the command line in this process, then reports which heavy libraries it had imported.
PROBE = """
import sys
from cellscreen.cli import main
sys.argv = ["cellscreen"] + sys.argv[1:]
try:
    main()
except SystemExit:
    pass
print("IMPORTED", ",".join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", nargs="+", choices=list(COMMANDS), help="time only these commands")
    args = parser.parse_args(argv)
    names = args.only or list(COMMANDS)
    probe = PROBE.format(heavy=HEAVY)
    with tempfile.TemporaryDirectory() as tmp:
        fields = {"missing": str(Path(tmp) / "no-such-model"), "folder": str(Path(tmp) / "no-such-folder"),
                  "out": tmp}
        times: dict[str, list[float]] = {name: [] for name in names}
        imported: dict[str, str] = {}
        for _ in range(args.rounds):
            for name in names:
                command = [sys.executable, "-c", probe] + [part.format(**fields) for part in COMMANDS[name]]
                start = time.perf_counter()
                done = subprocess.run(command, capture_output=True, text=True)
                times[name].append(time.perf_counter() - start)
                lines = [line for line in done.stderr.splitlines() if line.startswith("IMPORTED")]
                if not lines:
                    raise SystemExit(f"{name}: the probe did not finish:\n{done.stderr}")
                imported[name] = lines[-1].removeprefix("IMPORTED").strip()
    print(json.dumps({
        "bench": "startup", "rounds": args.rounds, "python": sys.executable,
        "commands": {name: {"median_s": round(statistics.median(t), 2), "min_s": round(min(t), 2),
                            "max_s": round(max(t), 2), "imported": imported[name].split(",") if imported[name] else []}
                     for name, t in times.items()},
    }, indent=2))


if __name__ == "__main__":
    main()
