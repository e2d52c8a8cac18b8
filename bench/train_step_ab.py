"""The seed malaria CNN's training step before and after the fused optimiser and the in-place normalisation.

    python bench/train_step_ab.py --rounds 24

Batch 16 at 128 px, bf16 autocast, 2 threads, through cellscreen's training module.  "before" uses
Adam's default (per-tensor) step and the earlier normalisation (``x / 255``, then ``(x - mean) / std``,
then a channels-last copy of the floats); "after" is what training does now.  The two alternate over
``--rounds`` rounds of 6 steps, so a busy moment hurts both; prints the median and best ms per step,
and the optimiser step alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings

import torch

from cellscreen.config import load_config
from cellscreen.engine import module as training_module
from cellscreen.engine.module import CellClassifier
from cellscreen.engine.train import build_model


def _earlier_normalise(images, config, memory_format=None):
    x = images.float() / 255.0
    x = (x - torch.tensor(config.mean).view(1, -1, 1, 1)) / torch.tensor(config.std).view(1, -1, 1, 1)
    return x if memory_format is None else x.contiguous(memory_format=memory_format)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=24)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=r".*self\.log\(\)")  # no Trainer to log to
    config = load_config("seed_malaria_cnn", {"input_size": 128, "batch_size": 16}, ["schedule=none"])
    images = torch.randint(0, 256, (16, 3, 128, 128), dtype=torch.uint8)
    targets = torch.randint(0, 2, (16,))
    current = training_module.normalise

    def make(fused: bool):
        torch.manual_seed(0)
        module = CellClassifier(build_model(config, num_classes=2, input_size=128), config).train()
        optimizer = module.configure_optimizers() if fused else torch.optim.Adam(module.parameters(), lr=config.lr)
        return module, optimizer

    variants = {"before": (make(False), _earlier_normalise), "after": (make(True), current)}
    steps = {name: [] for name in variants}
    optimiser = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, ((module, optimizer), normalise) in variants.items():
            training_module.normalise = normalise

            def step():
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    loss = module.training_step((images, targets), 0)
                loss.backward()
                start = time.perf_counter()
                optimizer.step()
                return time.perf_counter() - start

            step()
            start = time.perf_counter()
            alone = [step() for _ in range(6)]
            steps[name].append(1000 * (time.perf_counter() - start) / 6)
            optimiser[name].append(1000 * statistics.median(alone))
    training_module.normalise = current
    print(json.dumps({"rounds": args.rounds, "threads": args.threads, "batch_size": 16, "size": 128,
                      "step_ms_median": {k: round(statistics.median(v), 1) for k, v in steps.items()},
                      "step_ms_best": {k: round(min(v), 1) for k, v in steps.items()},
                      "optimiser_step_ms_median": {k: round(statistics.median(v), 2) for k, v in optimiser.items()}}))


if __name__ == "__main__":
    main()
