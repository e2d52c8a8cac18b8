"""The two resizes a model can record, on real cells: how long each takes and how far apart their pixels are.

    CELLSCREEN_DATA=../shared/data python bench/resize_methods.py --size 64

Decodes a spread of 2,000 malaria PNGs once, then pads and resizes them to ``--size`` with each of
``images.INTERPOLATIONS`` in turn over ``--rounds`` rounds (the best kept), and compares each one's pixels
with exact "bicubic" (mean and largest difference in grey levels, share of pixels that differ).  Prints
one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from cellscreen.data import images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--cells", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    root = Path(os.environ.get("CELLSCREEN_DATA", "../shared/data")) / "malaria-nih" / "cell_images"
    files = sorted(root.rglob("*.png"))
    decoded = [images.load_rgb(path) for path in files[:: max(1, len(files) // args.cells)][: args.cells]]
    best = {name: float("inf") for name in images.INTERPOLATIONS}
    for _ in range(args.rounds):
        for name in images.INTERPOLATIONS:
            start = time.perf_counter()
            for array in decoded:
                images.resize_square(array, args.size, name)
            best[name] = min(best[name], 1000 * (time.perf_counter() - start) / len(decoded))
    exact = np.stack([images.resize_square(array, args.size, "bicubic") for array in decoded]).astype(np.int16)
    result = {"cells": len(decoded), "mean_side": round(float(np.mean([a.shape[0] for a in decoded])), 1),
              "size": args.size, "ms_per_cell": {k: round(v, 3) for k, v in best.items()}, "against_bicubic": {}}
    for name in images.INTERPOLATIONS:
        other = np.stack([images.resize_square(array, args.size, name) for array in decoded]).astype(np.int16)
        difference = np.abs(other - exact)
        result["against_bicubic"][name] = {"mean": round(float(difference.mean()), 3), "max": int(difference.max()),
                                           "share_differing": round(float((difference > 0).mean()), 4)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
