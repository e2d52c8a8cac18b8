"""Does the class activation map point at the parasite?  A pointing game on parasitized cells.

    cellscreen split -d malaria-nih --seed 0 --out runs/split-malaria.csv    # the bundled model's own split
    OMP_NUM_THREADS=2 python bench/cam_pointing.py --split runs/split-malaria.csv --cells 300
    OMP_NUM_THREADS=2 python bench/cam_pointing.py --split runs/split-malaria.csv --all-methods --all-stages

For each parasitized cell (of the split's test part when ``--split`` is given, so cells the model never
trained on; the split's SHA-256 is checked against the one the checkpoint records) the stained parasite
body is found by colour: inside the cell (non-black pixels, holes filled, eroded by 4 px so that the dark
rim is left out), a pixel is stained where its green is at least 45 below the cell's median green and its
blue exceeds its green by 20 (Giemsa's purple).  Connected stained regions of at least 12 px (at the
file's resolution) are counted; a cell is kept only if there is exactly one and it has at least 40 px, so
the body is unambiguous.  The body is then brought to the model's input size as the cell is (padded to a
square, resized): a pixel of the model's input belongs to the body where at least 20% of it is stained.

The map for the parasitized class is computed at the model's input size, and two figures are printed:

- ``pointing``: the share of cells whose hottest map pixel (the arg-max) is on the body;
- ``top5``: the share of cells where the hottest 5% of the map's pixels overlap the body (one pixel in
  common is enough; the cells' black corners count as pixels of the map);
- ``chance``: the mean share of the cell's pixels that are body, what a map pointing at random would score
  on ``pointing``.

One JSON line per model, method and stage; the default (what ``cellscreen explain`` and the page draw: the
model's own CAM method, named by its registry entry and given on every line as ``own_method``, at the stages
``cam_stages`` picks) is marked ``"default": true``.  Each line carries the accuracy the run's own test report recorded
(``RUN/test/metrics.json``, written by ``cellscreen train``; null when there is none): a model that learned
little cannot be expected to point.  Registered models without weights (the zoo, untrained here) are listed as
``"untrained"``; pass ``--run DIR`` (repeatable) to measure trained run folders too.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage import measure

from cellscreen.data.images import load_rgb, resize_square
from cellscreen.engine.inference import normalise
from cellscreen.engine.kinds import load_checkpoint, resolve_checkpoint
from cellscreen.explain import CAM_METHODS, cam_stages, class_activation_maps, model_cam_method, network_stages
from cellscreen.models import list_models

MIN_REGION, MIN_BODY, GREEN_DROP, PURPLE = 12, 40, 45, 20


def stained_body(rgb: np.ndarray) -> np.ndarray | None:
    """The one clear stained body of a cell image (a boolean mask of its pixels), or None if there is not
    exactly one stained region of at least ``MIN_REGION`` px or it is smaller than ``MIN_BODY`` px."""
    colour = rgb.astype(np.int32)
    cell = ndimage.binary_fill_holes(colour.max(axis=-1) > 25)
    inner = ndimage.binary_erosion(cell, iterations=4)
    if inner.sum() < 100:
        return None
    green, blue = colour[..., 1], colour[..., 2]
    stained = inner & (green < np.median(green[inner]) - GREEN_DROP) & (blue > green + PURPLE)
    regions = measure.label(stained)
    sizes = np.bincount(regions.ravel())[1:]
    big = np.flatnonzero(sizes >= MIN_REGION)
    if len(big) != 1 or sizes[big[0]] < MIN_BODY:
        return None
    return regions == big[0] + 1


def at_input_size(mask: np.ndarray, size: int, interpolation: str) -> np.ndarray:
    """A mask of the file's pixels brought to the model's input as the cell is: pixels at least 20% covered."""
    grey = np.repeat((mask * 255).astype(np.uint8)[..., None], 3, axis=-1)
    return resize_square(grey, size, interpolation)[..., 0] >= 51


def parasitized_cells(root: Path, split: Path | None, limit: int, seed: int, part: str = "test") -> list[Path]:
    """``limit`` parasitized cells drawn at random (fixed seed): from the split's ``part`` if a split is given."""
    if split is not None:
        with split.open(newline="") as handle:
            paths = [root / row["path"] for row in csv.DictReader(handle)
                     if row["subset"] == part and row["label"] == "Parasitized"]
    else:
        paths = sorted((root / "Parasitized").glob("*.png"))
    order = np.random.default_rng(seed).permutation(len(paths))
    return [paths[k] for k in order[:limit]]


def scored_cells(paths: list[Path], size: int, interpolation: str) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """(picture at input size, body at input size, body share of the cell) of the cells with one clear body."""
    kept = []
    for path in paths:
        rgb = load_rgb(path)
        body = stained_body(rgb)
        if body is None:
            continue
        picture = resize_square(rgb, size, interpolation)
        small = at_input_size(body, size, interpolation)
        if not small.any():
            continue
        cell = picture.max(axis=-1) > 25
        kept.append((picture, small, float(small.sum() / max(cell.sum(), 1))))
    return kept


def pointing_game(model, cells, *, method: str, stages, target: int, batch: int = 32) -> dict:
    """The figures above for one model, method and set of stages."""
    import torch  # keeps --help fast

    hits = touches = 0
    for start in range(0, len(cells), batch):
        part = cells[start : start + batch]
        pictures = np.stack([picture for picture, _, _ in part])
        x = normalise(torch.from_numpy(pictures).permute(0, 3, 1, 2).contiguous(), model.data_config)
        heats = class_activation_maps(model, x, [target] * len(part), method=method, stages=stages)
        for heat, (_, body, _) in zip(heats, part):
            hits += bool(body.flat[int(heat.argmax())])
            hottest = heat >= np.quantile(heat, 0.95)
            touches += bool((hottest & body).any())
    return {"pointing": round(hits / len(cells), 4), "top5": round(touches / len(cells), 4)}


def test_accuracy(model: str) -> float | None:
    """The accuracy in the test report ``cellscreen train`` wrote beside the checkpoint, if there is one."""
    report = resolve_checkpoint(model).parent / "test" / "metrics.json"
    if not report.is_file():
        return None
    accuracy = json.loads(report.read_text()).get("metrics", {}).get("accuracy")
    return None if accuracy is None else round(float(accuracy), 4)


def measure_model(name: str, checkpoint, cells_of, *, methods: list[str], all_stages: bool,
                  accuracy: float | None = None) -> list[dict]:
    model = checkpoint.model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    config = model.data_config
    cells = cells_of(config.input_size, config.interpolation)
    target = checkpoint.classes.index("Parasitized")
    stages = network_stages(model)
    default = cam_stages(stages, config.input_size)
    own = model_cam_method(model)
    tried = [(own, default)]
    if methods:
        singles = stages if all_stages else default
        tried = [(m, [s]) for m in methods for s in singles] + [(m, default) for m in methods if len(default) > 1]
    rows = []
    for method, chosen in tried:
        row = {"model": name, "method": method, "stages": "+".join(s.title for s in chosen),
               "layers": "+".join(s.layer for s in chosen), "cells": len(cells),
               "chance": round(float(np.mean([c[2] for c in cells])), 4),
               **pointing_game(model, cells, method=method, stages=chosen, target=target),
               "default": method == own and chosen == default, "own_method": own, "test_accuracy": accuracy}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("CELLSCREEN_DATA", "../shared/data"),
                        help="a data root holding malaria-nih/ (default: $CELLSCREEN_DATA or ../shared/data)")
    parser.add_argument("--split", type=Path, default=None,
                        help="a split manifest: only its test part is used (default: every parasitized cell)")
    parser.add_argument("--part", default="test", help="with --split: the part whose cells are used (default: test)")
    parser.add_argument("--cells", type=int, default=300, help="parasitized cells drawn before the colour filter")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="malaria", help="checkpoint: bundled name or run folder (default: malaria)")
    parser.add_argument("--run", action="append", default=[], help="further trained run folders to measure")
    parser.add_argument("--all-methods", action="store_true", help="every CAM method (as --methods with all of them)")
    parser.add_argument("--methods", nargs="+", choices=CAM_METHODS, default=[],
                        help="these CAM methods at each of the default stages alone, and averaged over them")
    parser.add_argument("--all-stages", action="store_true", help="with --methods: at every stage, one at a time")
    args = parser.parse_args()

    root = Path(args.data) / "malaria-nih" / "cell_images"
    checkpoint = load_checkpoint(args.model)
    if args.split is not None:
        recorded = (checkpoint.meta.get("split") or {}).get("sha256")
        actual = hashlib.sha256(args.split.read_bytes()).hexdigest()
        print(json.dumps({"split": str(args.split), "part": args.part, "is_the_models_split": recorded == actual}),
              flush=True)
    paths = parasitized_cells(root, args.split, args.cells, args.seed, args.part)
    cache: dict[tuple, list] = {}

    def cells_of(size: int, interpolation: str):
        if (size, interpolation) not in cache:
            cache[size, interpolation] = scored_cells(paths, size, interpolation)
        return cache[size, interpolation]

    methods = list(CAM_METHODS) if args.all_methods else args.methods
    options = {"methods": methods, "all_stages": args.all_stages}
    measure_model(f"{args.model} ({checkpoint.meta['model']})", checkpoint, cells_of, **options,
                  accuracy=test_accuracy(args.model))
    for run in args.run:
        other = load_checkpoint(run)
        measure_model(f"{run} ({other.meta['model']})", other, cells_of, **options, accuracy=test_accuracy(run))
    trained = {checkpoint.meta["model"], *(load_checkpoint(run).meta["model"] for run in args.run)}
    print(json.dumps({"untrained": [name for name in list_models() if name not in trained],
                      "note": "no weights here for these registered models, so no figure"}), flush=True)


if __name__ == "__main__":
    main()
