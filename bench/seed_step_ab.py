"""Time one training step of the seed malaria CNN three ways: as registered (ReLU after the pooling), in the
published order (ReLU before it), and as registered without its dropout layers.

    python bench/seed_step_ab.py --threads 2

Batch 16 at 128 px through cellscreen's training module; the three are interleaved over several rounds
and the best round of each is printed (ms per step), so a busy machine hurts all three alike.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import torch
from torch import nn

from cellscreen.config import load_config
from cellscreen.engine.module import CellClassifier
from cellscreen.engine.train import build_model


def _variant(config, *, published_order: bool = False, dropout: bool = True):
    torch.manual_seed(0)
    net = build_model(config, num_classes=2, input_size=128)
    layers = list(net.features)
    for i, layer in enumerate(layers):
        if published_order and isinstance(layer, nn.ReLU):
            layers[i - 1], layers[i] = layer, layers[i - 1]
        if not dropout and isinstance(layer, nn.Dropout):
            layers[i] = nn.Identity()
    net.features = nn.Sequential(*layers)
    module = CellClassifier(net, config).train()
    return module, module.configure_optimizers()


def _step(module, optimizer, images, targets) -> None:
    optimizer.zero_grad(set_to_none=True)
    module.training_step((images, targets), 0).backward()
    optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=r".*self\.log\(\)")  # no Trainer to log to
    config = load_config("seed_malaria_cnn", {"input_size": 128, "batch_size": 16}, ["schedule=none"])
    variants = {"registered": _variant(config), "published_order": _variant(config, published_order=True),
                "registered_without_dropout": _variant(config, dropout=False)}
    images = torch.randint(0, 256, (16, 3, 128, 128), dtype=torch.uint8)
    targets = torch.randint(0, 2, (16,))
    best = {name: float("inf") for name in variants}
    for _ in range(args.rounds):
        for name, (module, optimizer) in variants.items():
            _step(module, optimizer, images, targets)  # warm-up
            start = time.perf_counter()
            for _ in range(args.steps):
                _step(module, optimizer, images, targets)
            best[name] = min(best[name], 1000 * (time.perf_counter() - start) / args.steps)
    print(json.dumps({"threads": args.threads, "batch_size": 16, "size": 128,
                      "ms_per_step": {name: round(ms, 1) for name, ms in best.items()}}))


if __name__ == "__main__":
    main()
