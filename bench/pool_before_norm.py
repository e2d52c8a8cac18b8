"""The default recipe's training step with compact_cnn6 and with compact_cnn6p (pooling before batch norm).

    python bench/pool_before_norm.py --rounds 12

The default preset (batch 64 at 64 px, augmentation, AdamW, bf16 autocast, channels-last) through
cellscreen's training module, after ``cellscreen.cpu.tune_process()`` as in training, on random uint8
batches.  The two models alternate over ``--rounds`` rounds of 4 steps, so a busy moment hurts both;
prints the median and best ms per step of each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from cellscreen.config import load_config

from _training import set_up, train_step, training_module  # this folder's shared set-up

MODELS = ("compact_cnn6", "compact_cnn6p")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    set_up(args.threads)
    images = torch.randint(0, 256, (64, 3, 64, 64), dtype=torch.uint8)
    targets = torch.randint(0, 2, (64,))
    steps = {}
    for name in MODELS:
        steps[name] = (*training_module(load_config("default", {"model": name}, ["schedule=none"]), 64), [])
    for _ in range(args.rounds):
        for module, optimizer, times in steps.values():
            train_step(module, optimizer, images, targets)  # warm-up
            start = time.perf_counter()
            for _ in range(4):
                train_step(module, optimizer, images, targets)
            times.append(1000 * (time.perf_counter() - start) / 4)
    print(json.dumps({"rounds": args.rounds, "threads": args.threads, "batch_size": 64, "size": 64,
                      "step_ms_median": {k: round(statistics.median(v[2]), 1) for k, v in steps.items()},
                      "step_ms_best": {k: round(min(v[2]), 1) for k, v in steps.items()}}))


if __name__ == "__main__":
    main()
