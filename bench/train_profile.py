"""Where a `cellscreen train` run's time goes, by Lightning's simple profiler.

    CELLSCREEN_DATA=../shared/data python bench/train_profile.py --split runs/cv/c6bf/folds.csv --fold 0

Trains ``--preset`` (default: the seed malaria CNN, batch 16 at 128 px) on ``--limit`` training cells of the
split's fold for ``--epochs`` epochs, exactly as ``cellscreen train`` does but with
``Trainer(profiler="simple")``, without early stopping, into a temporary folder.  Prints Lightning's
table (mean and total seconds per action) and, as JSON, the ms per training step and its forward,
backward and optimiser parts (the optimiser part is the rest of the step), the seconds of validation
per epoch, and the share of denormal numbers (nonzero, below float32's smallest normal 1.2e-38) in the
optimiser's state at the end.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from unittest import mock

import lightning as L
import torch

from cellscreen.config import load_config
from cellscreen.engine.train import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", required=True)
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--preset", default="seed_malaria_cnn")
    parser.add_argument("--limit", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    config = load_config(args.preset, {"dataset": "malaria-nih", "split": args.split, "fold": args.fold,
                                       "epochs": args.epochs, "train_limit": args.limit, "early_stopping": None})
    profilers = []
    real_init = L.Trainer.__init__

    def with_profiler(self, *a, **k):
        profiler = L.pytorch.profilers.SimpleProfiler()
        profilers.append(profiler)
        real_init(self, *a, profiler=profiler, **k)

    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(L.Trainer, "__init__", with_profiler):
        train(config, out=Path(tmp) / "run", progress=False)
        state = torch.load(Path(tmp) / "run" / "checkpoints" / "last.ckpt", map_location="cpu",
                           weights_only=False)["optimizer_states"][0]["state"]
    values = [t for s in state.values() for t in s.values() if t.is_floating_point() and t.numel() > 1]
    tiny = torch.finfo(torch.float32).tiny
    denormal = (sum(int(((t != 0) & (t.abs() < tiny)).sum()) for t in values) / sum(t.numel() for t in values)
                if values else None)  # plain SGD keeps no state
    profiler = profilers[0]
    print(profiler.summary())
    seconds = {action: sum(times) for action, times in profiler.recorded_durations.items()}
    steps = len(profiler.recorded_durations["run_training_batch"])

    def ms(action: str) -> float:
        return round(1000 * seconds[action] / steps, 1)

    print(json.dumps({"preset": args.preset, "input_size": config.input_size, "batch_size": config.batch_size,
                      "training_steps": steps, "ms_per_step": ms("run_training_batch"),
                      "forward_ms": ms("[Strategy]SingleDeviceStrategy.training_step"),
                      "backward_ms": ms("[Strategy]SingleDeviceStrategy.backward"),
                      "optimiser_ms": round(ms("run_training_batch") - ms("[Strategy]SingleDeviceStrategy.training_step")
                                            - ms("[Strategy]SingleDeviceStrategy.backward"), 1),
                      "validation_s_per_epoch": round(seconds["[Strategy]SingleDeviceStrategy.validation_step"]
                                                      / args.epochs, 2),
                      "denormal_share_of_optimiser_state": denormal if denormal is None else round(denormal, 4)}))


if __name__ == "__main__":
    main()
