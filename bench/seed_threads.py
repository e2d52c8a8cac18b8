"""Is the seed CNN's step faster as two one-thread processes on half a batch each (what `--devices 2
--strategy ddp` would do on two cores) than as one process with two threads?

Times the bare PyTorch step (forward, BCE loss, backward, Adam) of ``seed_malaria_cnn`` at 128 px,
channels-last, fp32, on random inputs: once with 2 threads at the full batch, then with two processes
at once, 1 thread and half the batch each (before DDP's gradient exchange, which would only add to it).
Prints JSON with the median ms per step of each.

    python bench/seed_threads.py --batch 16
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def step_ms(threads: int, batch: int, steps: int) -> float:
    import torch

    from cellscreen.models import create_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model("seed_malaria_cnn", num_classes=2).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    x = torch.rand(batch, 3, 128, 128).to(memory_format=torch.channels_last)
    y = torch.rand(batch, 1).round()
    loss_fn = torch.nn.BCEWithLogitsLoss()
    times = []
    for _ in range(steps + 10):  # the first 10 are warm-up
        start = time.perf_counter()
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[10:]) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--one", nargs=2, type=int, metavar=("THREADS", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # a child process: one measurement
        print(step_ms(*args.one, args.steps))
        return
    child = [sys.executable, __file__, "--steps", str(args.steps), "--one"]
    single = float(subprocess.run(child + ["2", str(args.batch)], capture_output=True, text=True,
                                  check=True).stdout)
    pair = [subprocess.Popen(child + ["1", str(args.batch // 2)], stdout=subprocess.PIPE, text=True)
            for _ in range(2)]
    halves = [float(p.communicate()[0]) for p in pair]
    print(json.dumps({"bench": "seed_threads", "batch": args.batch, "steps": args.steps,
                      "one_process_2_threads_ms": round(single, 1),
                      "two_processes_1_thread_half_batch_ms": [round(h, 1) for h in halves]}))


if __name__ == "__main__":
    main()
