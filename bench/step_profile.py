"""Which operations one training step of a preset spends its time in, by PyTorch's profiler.

    python bench/step_profile.py --preset default
    python bench/step_profile.py --preset seed_malaria_cnn --set model=compact_cnn6

The preset's model at its input size and batch size, through cellscreen's training module (augmentation,
normalisation, loss) with bf16 autocast (or ``--precision 32``), on random uint8 batches, after
``cellscreen.cpu.tune_process()`` as in training.  After ``--warmup`` steps, ``--steps`` steps are profiled; prints the median ms per step
measured without the profiler just before, then the operations by self CPU time per step, split by
input shape, so that e.g. the first batch norm and the last are separate rows.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile

from cellscreen.config import load_config
from cellscreen.models import get_data_config

from _training import set_up, train_step, training_module  # this folder's shared set-up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--set", action="append", default=[], help="FIELD=VALUE changes to the preset")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", type=int, default=25)
    parser.add_argument("--precision", choices=["bf16-mixed", "32"], default="bf16-mixed")
    args = parser.parse_args()
    set_up(args.threads)
    config = load_config(args.preset, {}, ["schedule=none", *args.set])
    size = config.input_size or get_data_config(config.model).input_size  # as train() picks it
    module, optimizer = training_module(config, size)
    batch = (torch.randint(0, 256, (config.batch_size, 3, size, size), dtype=torch.uint8),
             torch.randint(0, 2, (config.batch_size,)))
    for _ in range(args.warmup):
        train_step(module, optimizer, *batch, args.precision)
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        train_step(module, optimizer, *batch, args.precision)
        times.append(1000 * (time.perf_counter() - start))
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(args.steps):
            train_step(module, optimizer, *batch, args.precision)
    print(f"{config.model} at {size} px, batch {config.batch_size}, {args.precision}: "
          f"{statistics.median(times):.1f} ms per step (median of {args.steps}, without the profiler)")
    events = sorted(prof.key_averages(group_by_input_shape=True), key=lambda e: -e.self_cpu_time_total)
    print(f"{'ms per step':>11}  operation  (first input's shape)")
    for event in events[:args.rows]:
        shape = event.input_shapes[0] if event.input_shapes else ""
        print(f"{event.self_cpu_time_total / 1000 / args.steps:11.2f}  {event.key}  {shape}")


if __name__ == "__main__":
    main()
