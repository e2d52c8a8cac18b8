"""Why the seed malaria CNN starts slowly: its training loss over the first steps, several ways.

    CELLSCREEN_DATA=../shared/data python bench/seed_stall.py --split runs/cv/c6bf/folds.csv --fold 0

A plain PyTorch loop (no Lightning) over the first ``--steps`` batches of 16 of the seed preset's
training cells (``--limit`` of them, 128 px, cached), Adam, bf16 autocast.  Prints the mean loss of
every 50 steps for each variant: as registered (rescale 1/255, Glorot init, dropout), other learning
rates, without dropout, with PyTorch's default init, in fp32 (as Keras trains; also with Keras's Adam
epsilon), and with standardised input.
"""

from __future__ import annotations

import argparse
import json
import warnings

import torch
import torch.nn.functional as F

from cellscreen.config import load_config
from cellscreen.engine.data import prepare_data
from cellscreen.engine.train import build_model


def _losses(config, images, targets, *, steps: int, lr: float = 1e-3, seed: int = 0, dropout: bool = True,
            torch_init: bool = False, shift: float = 0.0, scale: float = 1.0, bf16: bool = True,
            eps: float = 1e-8) -> list[float]:
    torch.manual_seed(seed)
    net = build_model(config, num_classes=2, input_size=images.shape[-1])
    for layer in net.modules():
        if not dropout and isinstance(layer, torch.nn.Dropout):
            layer.p = 0.0
        if torch_init and isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
            layer.reset_parameters()
    optimizer = torch.optim.Adam(net.parameters(), lr=lr, eps=eps)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    losses = []
    net.train()
    for step in range(steps):
        start = (step * 16) % len(images)
        batch = order[start:start + 16]
        x = (images[batch].float() / 255 - shift) / scale
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logit = net(x).float().squeeze(1)
        loss = F.binary_cross_entropy_with_logits(logit, targets[batch].float())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return [round(sum(losses[k:k + 50]) / len(losses[k:k + 50]), 3) for k in range(0, steps, 50)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", required=True)
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--limit", type=int, default=4000)
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="+", help="run only the variants whose names start with these")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    config = load_config("seed_malaria_cnn", {"dataset": "malaria-nih", "split": args.split, "fold": args.fold,
                                              "train_limit": args.limit})
    train = prepare_data(config, data=None, input_size=128, interpolation="reduce-bicubic",
                         progress=False).subsets["train"]
    images, targets = train.images, train.targets
    mean = float((images[:500].float() / 255).mean())
    std = float((images[:500].float() / 255).std())
    variants = {
        "as registered": {},
        "seed 1": {"seed": 1},
        "lr 3e-4": {"lr": 3e-4},
        "lr 1e-4": {"lr": 1e-4},
        "no dropout": {"dropout": False},
        "PyTorch default init": {"torch_init": True},
        "fp32 (no autocast)": {"bf16": False},
        "fp32, Keras's Adam epsilon (1e-7)": {"bf16": False, "eps": 1e-7},
        f"standardised input ((x - {mean:.2f}) / {std:.2f})": {"shift": mean, "scale": std},
    }
    for name, kwargs in variants.items():
        if args.only and not any(name.startswith(prefix) for prefix in args.only):
            continue
        print(json.dumps({"variant": name, "steps": args.steps,
                          "mean_loss_per_50_steps": _losses(config, images, targets, steps=args.steps, **kwargs)}),
              flush=True)


if __name__ == "__main__":
    main()
