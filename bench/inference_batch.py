"""PyTorch inference speed against batch size: validation while training, and evaluation.

    python bench/inference_batch.py --rounds 3

Runs the seed malaria CNN (128 px) and the default model (``compact_cnn6``, 64 px) in eval mode through
cellscreen's training module (uint8 in, normalised and laid out channels-last inside) on 1,024 synthetic
cells, in bf16 autocast (what validation uses on a CPU with bf16 units) and in fp32 (what evaluation
uses), at each of ``--batch-sizes``, alternating over ``--rounds`` rounds; then the ``--onnx`` model (the
bundled one) on onnxruntime, fp32 and int8, one thread.  Prints the best cells/s of each.
Large batches make activations that do not fit in the CPU's caches: at 128 px the seed CNN's first map is
0.5 MB per cell.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
import warnings

import torch

from cellscreen.config import load_config
from cellscreen.engine.module import CellClassifier
from cellscreen.engine.train import build_model

CASES = {"seed_malaria_cnn": 128, "default": 64}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 128, 64, 32, 16])
    parser.add_argument("--cells", type=int, default=1024)
    parser.add_argument("--onnx", default="malaria", help="also time this model on onnxruntime ('' to skip)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    result = {"threads": args.threads, "cells": args.cells, "cells_per_s_best": {}}
    for preset, size in CASES.items():
        config = load_config(preset, {"input_size": size}, ["schedule=none"])
        torch.manual_seed(0)
        module = CellClassifier(build_model(config, num_classes=2, input_size=size), config).eval()
        images = torch.randint(0, 256, (args.cells, 3, size, size), dtype=torch.uint8)
        best: dict[str, float] = {}
        for _ in range(args.rounds):
            for precision in ("bf16", "fp32"):
                for batch in args.batch_sizes:
                    cast = (torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16"
                            else contextlib.nullcontext())
                    with torch.inference_mode(), cast:
                        module(images[:batch])
                        start = time.perf_counter()
                        for i in range(0, args.cells, batch):
                            module(images[i:i + batch])
                        rate = args.cells / (time.perf_counter() - start)
                    key = f"{precision} batch {batch}"
                    best[key] = max(best.get(key, 0.0), round(rate))
        result["cells_per_s_best"][f"{preset} ({size} px)"] = best
        print(json.dumps({preset: best}), flush=True)
    if args.onnx:  # the bundled model on onnxruntime, one thread (as in each prediction worker)
        import numpy as np

        from cellscreen.serve.runtime import load_predictor

        for engine in ("int8", "onnx"):
            predictor = load_predictor(args.onnx, engine=engine, threads=1)
            size = predictor.input_size
            pixels = np.random.default_rng(0).integers(0, 256, (args.cells, size, size, 3), dtype=np.uint8)
            best = {}
            for _ in range(args.rounds):
                for batch in args.batch_sizes:
                    predictor.predict(pixels[:batch])
                    start = time.perf_counter()
                    for i in range(0, args.cells, batch):
                        predictor.predict(pixels[i:i + batch])
                    key = f"batch {batch}"
                    best[key] = max(best.get(key, 0.0), round(args.cells / (time.perf_counter() - start)))
            result["cells_per_s_best"][f"{args.onnx} on onnxruntime, {engine}, 1 thread"] = best
            print(json.dumps({engine: best}), flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
