"""Per-slide batch-norm re-estimation ("AdaBN") on cross-validation checkpoints, against plain prediction.

    CELLSCREEN_DATA=../shared/data python bench/slide_bn.py runs/cv/default

For each fold's test slides, the batch-norm statistics are re-estimated from that slide's own cells (no
labels used), then the slide is predicted. Slides differ in stain, so this is the textbook unsupervised
fix; it prints one JSON line per fold and the means.
"""

from __future__ import annotations

import argparse
import copy
import json

import numpy as np
import torch
from sklearn.metrics import accuracy_score, roc_auc_score

from cellscreen.config import load_config
from cellscreen.engine.checkpoint import load_checkpoint
from cellscreen.engine.data import prepare_data
from cellscreen.engine.inference import normalise, predict_proba


def slide_adapted(model: torch.nn.Module, images: torch.Tensor) -> torch.nn.Module:
    """A copy of ``model`` whose batch-norm statistics are the average over ``images`` (N, 3, H, W uint8)."""
    model = copy.deepcopy(model).train()
    for layer in model.modules():
        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
            layer.reset_running_stats()
            layer.momentum = None  # a plain average over the slide
        elif isinstance(layer, torch.nn.Dropout):
            layer.eval()
    with torch.no_grad():
        for start in range(0, len(images), 512):
            model(normalise(images[start : start + 512], model.data_config))
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cv", help="a bench/crossval.py output folder (fold0, fold1, ...)")
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for fold in range(args.folds):
        run = f"{args.cv}/fold{fold}"
        checkpoint = load_checkpoint(run)
        data = prepare_data(load_config(f"{run}/config.yaml"), data=None,
                            input_size=checkpoint.data_config.input_size,
                            interpolation=checkpoint.data_config.interpolation, progress=False)
        test = data.subsets["test"]
        targets = test.targets.numpy()
        pixels = test.images.permute(0, 2, 3, 1).numpy()
        plain = predict_proba(checkpoint.model, pixels)[:, 1]
        adapted = np.zeros_like(plain)
        groups = np.array(test.groups)
        for group in np.unique(groups):
            where = np.flatnonzero(groups == group)
            adapted[where] = predict_proba(slide_adapted(checkpoint.model, test.images[where]), pixels[where])[:, 1]
        row = {"fold": fold, "accuracy": accuracy_score(targets, plain > 0.5), "roc_auc": roc_auc_score(targets, plain),
               "accuracy_slide_bn": accuracy_score(targets, adapted > 0.5),
               "roc_auc_slide_bn": roc_auc_score(targets, adapted)}
        rows.append(row)
        print(json.dumps({k: round(v, 4) for k, v in row.items()}), flush=True)
    print(json.dumps({"mean": {k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0] if k != "fold"}}))


if __name__ == "__main__":
    main()
