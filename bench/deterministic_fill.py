"""Lightning training steps with deterministic algorithms, with and without filling new memory with NaN.

    python bench/deterministic_fill.py --rounds 3

``torch.use_deterministic_algorithms(True)`` (what ``Trainer(deterministic=True)`` sets) also turns on
``torch.utils.deterministic.fill_uninitialized_memory``, which fills every new tensor.  This trains the
seed malaria CNN (batch 16, 128 px) and the default model (``compact_cnn6``, batch 64, 64 px) for one
epoch of synthetic cells through a Lightning Trainer as ``cellscreen train`` builds it (bf16 autocast on a
CPU with bf16 units, else fp32), three ways in turn for ``--rounds`` rounds: deterministic and filling,
deterministic and not filling, not deterministic.  Prints the median and best ms per step of each, and
whether each gave the same weights as the first.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
import warnings

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from cellscreen.config import load_config
from cellscreen.engine.inference import resolve_precision
from cellscreen.engine.module import CellClassifier
from cellscreen.engine.train import build_model

CASES = {"seed_malaria_cnn": (128, 16, 1600), "default": (64, 64, 3200)}  # size, batch, cells


class _Clock(L.Callback):
    def on_train_epoch_start(self, trainer, module):
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, module):
        self.seconds = time.perf_counter() - self.start


VARIANTS = {"deterministic, filling": (True, True), "deterministic, not filling": (True, False),
            "not deterministic": (False, False)}


def _epoch(preset: str, deterministic: bool, fill: bool, precision: str) -> tuple[float, torch.Tensor]:
    size, batch, cells = CASES[preset]
    config = load_config(preset, {"input_size": size, "batch_size": batch}, ["schedule=none"])
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (cells, 3, size, size), dtype=torch.uint8, generator=generator)
    targets = torch.randint(0, 2, (cells,), generator=generator)
    torch.manual_seed(0)
    module = CellClassifier(build_model(config, num_classes=2, input_size=size), config)
    loader = DataLoader(TensorDataset(images, targets), batch_size=batch, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(0))
    clock = _Clock()
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", precision=precision, callbacks=[clock], logger=False,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                        deterministic=deterministic, log_every_n_steps=1, num_sanity_val_steps=0)
    torch.use_deterministic_algorithms(deterministic)
    torch.utils.deterministic.fill_uninitialized_memory = fill
    trainer.fit(module, loader)
    weights = torch.cat([p.detach().float().flatten() for p in module.parameters()])
    return 1000 * clock.seconds / len(loader), weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    precision = resolve_precision("auto", "cpu")
    result = {"precision": precision, "threads": args.threads, "rounds": args.rounds}
    for preset in CASES:
        times = {name: [] for name in VARIANTS}
        weights = {}
        for _ in range(args.rounds):
            for name, (deterministic, fill) in VARIANTS.items():
                ms, weights[name] = _epoch(preset, deterministic, fill, precision)
                times[name].append(ms)
        size, batch, _ = CASES[preset]
        first = weights[next(iter(VARIANTS))]
        result[preset] = {"size": size, "batch_size": batch,
                          "ms_per_step_median": {name: round(statistics.median(t), 1) for name, t in times.items()},
                          "ms_per_step_best": {name: round(min(t), 1) for name, t in times.items()},
                          "same_weights_as_first": {name: bool(torch.equal(w, first)) for name, w in weights.items()}}
        print(json.dumps({preset: result[preset]}), flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
