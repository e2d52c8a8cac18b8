"""The seed malaria CNN's training step with the earlier input path and dropout mask, and as they are now.

    python bench/input_path_ab.py --rounds 24

Batch 16 at 128 px, bf16 autocast, 2 threads, through cellscreen's training module, after
``cellscreen.cpu.tune_process()`` as in training.  "before": ``augment_batch`` turned every batch into
floats (``x / 255``) even with no colour or stain jitter to apply, so normalisation got floats and
copied them into channels-last, and autocast copied them again into bf16; dropout converted its bool
mask to the input's dtype, and drew 16 bits per value.  "now": a batch with no jitter stays uint8 until
normalisation, and the mask converts as uint8 and takes 8 bits per value (the seed CNN's rates 0.2, 0.3
and 0.5 are multiples of 1/256 within 1%).  The two alternate over ``--rounds`` rounds of 6 steps, so a
busy moment hurts both; prints the median and best ms per step.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from cellscreen.config import load_config
from cellscreen.data.augment import augment_batch
from cellscreen.engine import module as module_code
from cellscreen.models import layers
from cellscreen.models.layers import random_words

from _training import set_up, train_step, training_module  # this folder's shared set-up


def _earlier_augment(images, **kwargs):
    images = augment_batch(images, **kwargs)
    return images.float() / 255.0 if images.dtype == torch.uint8 else images


def _earlier_dropout(self, x):
    if not self.training or self.p == 0:
        return x
    n = x.numel()
    words = random_words((n + 3) // 4).view(torch.int16)[:n]
    keep = words.as_strided(x.shape, x.stride()) >= round(self.p * 65536) - 32768
    return x * keep.to(x.dtype).mul_(1.0 / (1.0 - self.p))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=24)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    set_up(args.threads)
    config = load_config("seed_malaria_cnn", {"input_size": 128, "batch_size": 16}, ["schedule=none"])
    images = torch.randint(0, 256, (16, 3, 128, 128), dtype=torch.uint8)
    targets = torch.randint(0, 2, (16,))
    module, optimizer = training_module(config, 128)
    ways = {"before": (_earlier_augment, _earlier_dropout), "now": (augment_batch, layers.Dropout.forward)}
    steps = {name: [] for name in ways}
    try:
        for _ in range(args.rounds):
            for name, (augment, dropout) in ways.items():
                module_code.augment_batch, layers.Dropout.forward = augment, dropout
                train_step(module, optimizer, images, targets)  # warm-up
                start = time.perf_counter()
                for _ in range(6):
                    train_step(module, optimizer, images, targets)
                steps[name].append(1000 * (time.perf_counter() - start) / 6)
    finally:
        module_code.augment_batch, layers.Dropout.forward = ways["now"]
    print(json.dumps({"rounds": args.rounds, "threads": args.threads, "batch_size": 16, "size": 128,
                      "step_ms_median": {k: round(statistics.median(v), 1) for k, v in steps.items()},
                      "step_ms_best": {k: round(min(v), 1) for k, v in steps.items()}}))


if __name__ == "__main__":
    main()
