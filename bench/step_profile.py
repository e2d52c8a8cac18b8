"""Which operations one training step of a preset spends its time in, by PyTorch's profiler.

    python bench/step_profile.py --preset default
    python bench/step_profile.py --preset seed_malaria_cnn --set model=compact_cnn6

The preset's model at its input size and batch size, through cellscreen's training module (augmentation,
normalisation, loss) with bf16 autocast, on random uint8 batches, after ``cellscreen.cpu.tune_process()``
as in training.  After ``--warmup`` steps, ``--steps`` steps are profiled; prints the median ms per step
measured without the profiler just before, then the operations by self CPU time per step, split by
input shape, so that e.g. the first batch norm and the last are separate rows.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from torch.profiler import ProfilerActivity, profile

from cellscreen.config import load_config
from cellscreen.cpu import tune_process
from cellscreen.engine.module import CellClassifier
from cellscreen.engine.train import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--set", action="append", default=[], help="FIELD=VALUE changes to the preset")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", type=int, default=25)
    args = parser.parse_args()
    tune_process()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=r".*self\.log\(\)")  # no Trainer to log to
    config = load_config(args.preset, {}, ["schedule=none", *args.set])
    size = config.input_size or 64
    torch.manual_seed(0)
    module = CellClassifier(build_model(config, num_classes=2, input_size=size), config).train()
    optimizer = module.configure_optimizers()
    images = torch.randint(0, 256, (config.batch_size, 3, size, size), dtype=torch.uint8)
    targets = torch.randint(0, 2, (config.batch_size,))

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = module.training_step((images, targets), 0)
        loss.backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(1000 * (time.perf_counter() - start))
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(args.steps):
            step()
    print(f"{config.model} at {size} px, batch {config.batch_size}: {statistics.median(times):.1f} ms per step "
          f"(median of {args.steps}, without the profiler)")
    events = sorted(prof.key_averages(group_by_input_shape=True), key=lambda e: -e.self_cpu_time_total)
    print(f"{'ms per step':>11}  operation  (first input's shape)")
    for event in events[:args.rows]:
        shape = event.input_shapes[0] if event.input_shapes else ""
        print(f"{event.self_cpu_time_total / 1000 / args.steps:11.2f}  {event.key}  {shape}")


if __name__ == "__main__":
    main()
