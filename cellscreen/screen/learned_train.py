"""Train the learned cell finder on a lab's own annotated fields: what ``cellscreen cells train`` runs.

The fields are split by name (natural order): every 10th is a tuning field
(the decoding is chosen there: ``learned_tune``), and the network is trained on the
rest, except that

- where a set names its fields with every cell labelled (``complete``, as
  Chula RBC-12 does), those are dealt into ``folds`` by name: one fold is
  kept out for scoring, every 4th of the others is a tuning field and the
  rest are learned from, with the fields labelled in part (so that training
  once per fold scores every complete field; ``folds=1`` keeps them all out).
  On a field labelled in part a cell left unlabelled must not be taught as
  background, so the loss counts only near the labelled centres and on the
  background (the stained pixels elsewhere are left out);
- otherwise (TXL-PBC) fields 7, 8 and 9 of every ten are kept out for scoring.

Every field is resized so that a red cell is ``WORK_DIAMETER`` pixels across (``work_diameter``).
Points give no size: the diameter is then one for the whole set, the
classical finder's median on the tuning fields. Boxes give each field's own
(the median red box); at run time the classical finder measures it, times
the ratio of the boxes' to its measure on the tuning fields. Random crops (a
quarter of them along the field's edge, where cells are cut by the border),
scale jitter, flips and colour jitter; CenterNet's focal loss; AdamW. The
crops are ``CROP`` work pixels across (96: six red cells; a field smaller
than a crop is seen whole, the rest of the crop left out of the loss).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from skimage import filters
from scipy import ndimage as ndi
from torch.nn import functional as F
from tqdm.auto import tqdm

from cellscreen import __version__
from cellscreen.data.images import ImageReadError, load_rgb
from cellscreen.errors import UserError
from cellscreen.files import atomic_path, atomic_write
from cellscreen.screen.annotations import YOLO_KINDS, read_point_labels, read_yolo_boxes
from cellscreen.screen.detect import find_cells
from cellscreen.screen.finding import LABEL_FORMATS, labelled_fields, natural_order
from cellscreen.screen.learned import (DESCRIPTION, GRAPH, KINDS, MULTIPLE, OUTPUTS, STRIDE, WEIGHTS,
                                       WORK_DIAMETER, LearnedFinder,
                                       standardise, work_field)
from cellscreen.screen.learned_net import CentreNet, centre_loss, draw_targets
from cellscreen.screen.learned_tune import TuningField, choose_decoding

__all__ = ["train_detector", "split_fields", "TrainingField"]

TUNING_EVERY = 10  # every 10th field by name is a tuning field
DEFAULT_FOLDS = 2  # complete fields are dealt into this many folds; one is held out
COMPLETE_TUNING_EVERY = 4  # of the complete fields not held out, every 4th is a tuning field
HELD_OUT = (7, 8, 9)  # without a list of complete fields, these of every ten are kept out for scoring
CROP = 96  # training crops' side in work pixels: 6 red cells across, a whole TXL-PBC field or most of it (64 held 4);
# chosen on TXL-PBC's tuning fields (red F1 0.918 against 0.863), at some cost to white cells (BENCHMARKS.md)
WIDTH = 12  # the network's narrowest layer's channels (``CentreNet``'s width)
DILATIONS = (2, 4)  # the dilations of the network's context layers (``CentreNet``)
WHITE_WEIGHT = 1.0  # the white cells' heat map counts this much beside the red cells' in the loss
SCALE_JITTER = (0.85, 1.18)
EDGE_CROPS = 0.25  # share of crops (along each side) that start at the field's edge
TRUSTED_REACH = 0.6  # on fields labelled in part, the loss counts within this many diameters of a labelled centre
PROBE_FIELDS = 20  # tuning fields the classical finder measures to set a point-labelled set's scale


@dataclass
class TrainingField:
    """One field at work scale with its labelled centres, as the sampler needs it."""

    stem: str
    pixels: np.ndarray  # (3, H, W) standardised
    centres: np.ndarray  # (N, 2) x, y work pixels
    kinds: np.ndarray  # (N,) channel
    sizes: np.ndarray | None  # (N, 2) width, height as shares of the red-cell diameter; None for points
    trusted: np.ndarray | None  # (H, W) where the loss counts; None: everywhere


def split_fields(stems: list[str], complete: set[str], *, fold: int = 0, folds: int = 1) -> dict[str, list[str]]:
    """Train, tuning and held-out field stems (see the module's docstring); ``fold`` of ``folds`` says which
    complete fields are held out."""
    if not 0 <= fold < folds:
        raise UserError(f"--fold must be K/N with 0 <= K < N (got {fold}/{folds})")
    split: dict[str, list[str]] = {"train": [], "tuning": [], "held_out": []}
    partial = [s for s in stems if s not in complete]
    for i, stem in enumerate(partial if complete else stems):
        if i % TUNING_EVERY == 0:
            split["tuning"].append(stem)
        elif not complete and i % TUNING_EVERY in HELD_OUT:
            split["held_out"].append(stem)
        else:
            split["train"].append(stem)
    whole = [s for s in stems if s in complete]
    split["held_out"] += [s for i, s in enumerate(whole) if i % folds == fold]
    for i, stem in enumerate(s for i, s in enumerate(whole) if i % folds != fold):
        split["tuning" if i % COMPLETE_TUNING_EVERY == 0 else "train"].append(stem)
    return split


def _read_labels(path: Path, label_format: str, rgb: np.ndarray, yolo_kinds: tuple[str, ...]) -> list:
    try:
        if label_format == "chula":
            cells = read_point_labels(path)
            if cells and all(0 <= c.centre[0] <= 1 and 0 <= c.centre[1] <= 1.5 for c in cells):
                raise ValueError("every point lies within 1 pixel of the corner: these look like YOLO "
                                 "fractions, not pixels (use --format yolo)")
            return cells
        return read_yolo_boxes(path, width=rgb.shape[1], height=rgb.shape[0], kinds=yolo_kinds)
    except ValueError as exc:
        raise UserError(f"{path} cannot be read as {label_format} labels: {exc}") from None


def _box_diameter(labelled: list) -> float | None:
    """A field's red-cell diameter from its boxes: the median of sqrt(w h) over its red boxes."""
    sides = [np.sqrt((c.box[2] - c.box[0]) * (c.box[3] - c.box[1])) for c in labelled if c.kind == "red"]
    return float(np.median(sides)) if sides else None


def _background_mask(work: np.ndarray, work_diameter: float) -> np.ndarray:
    """Pixels clearly of the background: far in colour from none, well away from anything stained."""
    colour = np.percentile(work.reshape(-1, 3), 90, axis=0)
    stain = np.linalg.norm(work.astype(np.float32) - colour, axis=2)
    stained = stain > filters.threshold_otsu(stain) if np.ptp(stain) > 0 else np.zeros(stain.shape, bool)
    return ndi.distance_transform_edt(~stained) > 0.15 * work_diameter


def _field(stem: str, rgb: np.ndarray, labelled: list, diameter: float, kinds: tuple[str, ...],
           partial: bool, boxes: bool, work_diameter: float = WORK_DIAMETER) -> TrainingField:
    work = work_field(rgb, diameter, work_diameter)
    sx, sy = work.shape[1] / rgb.shape[1], work.shape[0] / rgb.shape[0]
    cells = [c for c in labelled if c.kind in kinds]
    centres = np.array([((c.centre[0] + 0.5) * sx - 0.5, (c.centre[1] + 0.5) * sy - 0.5) for c in cells],
                       float).reshape(-1, 2)
    sizes = np.array([((c.box[2] - c.box[0]) / diameter, (c.box[3] - c.box[1]) / diameter) for c in cells],
                     float).reshape(-1, 2) if boxes else None
    trusted = None
    if partial:
        near = np.zeros(work.shape[:2], bool)
        rows = np.clip(np.round(centres[:, 1]).astype(int), 0, work.shape[0] - 1)
        cols = np.clip(np.round(centres[:, 0]).astype(int), 0, work.shape[1] - 1)
        near[rows, cols] = True
        near = ndi.distance_transform_edt(~near) <= TRUSTED_REACH * work_diameter if len(cells) else near
        trusted = near | _background_mask(work, work_diameter)
    return TrainingField(stem, standardise(work), centres, np.array([kinds.index(c.kind) for c in cells], int),
                         sizes, trusted)


def _crop_start(rng: np.random.Generator, side: int, window: int) -> int:
    """Where a crop of ``window`` pixels starts along a field's ``side``: anywhere, or at one of the field's two
    edges (``EDGE_CROPS`` of the time), so that cells cut by the field's border, which the network meets at every
    field's edge, are seen as often as they are met."""
    low, high = min(0, side - window), max(0, side - window)
    if rng.random() < EDGE_CROPS:
        return int(low if rng.random() < 0.5 else high)
    return int(rng.integers(low, high + 1))


def _crop(field: TrainingField, rng: np.random.Generator, n_kinds: int, crop: int = CROP,
          work_diameter: float = WORK_DIAMETER) -> tuple:
    """One augmented training crop: pixels (3, crop, crop), where the loss counts and the targets
    (``draw_targets``), at output resolution."""
    _, height, width = field.pixels.shape
    scale = rng.uniform(*SCALE_JITTER)
    window = int(round(crop / scale))
    x0, y0 = _crop_start(rng, width, window), _crop_start(rng, height, window)
    pixels = np.zeros((3, window, window), np.float32)
    trusted = np.zeros((window, window), np.float32)
    xs, ys = slice(max(0, x0), min(width, x0 + window)), slice(max(0, y0), min(height, y0 + window))
    into = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
    pixels[:, into[0], into[1]] = field.pixels[:, ys, xs]
    trusted[into] = 1.0 if field.trusted is None else field.trusted[ys, xs]
    image = F.interpolate(torch.from_numpy(pixels)[None], size=(crop, crop), mode="bilinear", align_corners=False)[0]
    out = crop // STRIDE
    trust = F.interpolate(torch.from_numpy(trusted)[None, None], size=(out, out), mode="nearest")[0]
    centres = (field.centres - [x0, y0] + 0.5) * (crop / window) - 0.5
    sizes = None if field.sizes is None else field.sizes.copy()
    if rng.random() < 0.5:
        image, trust, centres[:, 0] = image.flip(2), trust.flip(2), crop - 1 - centres[:, 0]
    if rng.random() < 0.5:
        image, trust, centres[:, 1] = image.flip(1), trust.flip(1), crop - 1 - centres[:, 1]
    if rng.random() < 0.5:
        image, trust, centres = image.transpose(1, 2), trust.transpose(1, 2), centres[:, ::-1].copy()
        sizes = None if sizes is None else sizes[:, ::-1].copy()
    image = image * torch.from_numpy(rng.normal(1, 0.1, (3, 1, 1)).astype(np.float32)) + torch.from_numpy(
        rng.normal(0, 0.1, (3, 1, 1)).astype(np.float32))
    if sizes is not None:
        sizes = sizes * (crop / window)
    targets = draw_targets((out, out), centres / STRIDE, field.kinds, sizes, n_kinds, work_diameter)
    return image, trust, {name: torch.from_numpy(target) for name, target in targets.items()}


def _export(model: CentreNet, path: Path) -> None:
    example = torch.zeros(1, 3, 64, 96)
    with atomic_path(path) as tmp:
        torch.onnx.export(model, (example,), str(tmp), input_names=["fields"], output_names=list(OUTPUTS),
                          dynamic_axes={"fields": {2: "height", 3: "width"}, **{name: {2: "h", 3: "w"}
                                                                                for name in OUTPUTS}},
                          opset_version=17, dynamo=False)


def train_detector(images: str | Path, labels: str | Path, out: str | Path, *, label_format: str,
                   yolo_kinds: tuple[str, ...] | None = None, complete: tuple[str, ...] = (), border: str = "keep",
                   steps: int = 1500, batch_size: int = 12, crop: int | tuple[int, ...] = CROP, width: int = WIDTH,
                   work_diameter: float = WORK_DIAMETER, dilations: tuple[int, ...] = DILATIONS,
                   white_weight: float = WHITE_WEIGHT, seed: int = 0, threads: int = 2, dataset: str | None = None,
                   overwrite: bool = False, progress: bool = True, fold: int = 0, folds: int | None = None) -> dict:
    """Train a cell finder on the labelled fields of ``images`` and write its run folder ``out``; return its
    description (``model.json``). ``fold`` of ``folds`` (default 2 where the set names its complete fields, else
    1) says which complete fields are held out for scoring."""
    if label_format not in LABEL_FORMATS:
        raise UserError(f"unknown label format {label_format!r}; choose one of: {', '.join(LABEL_FORMATS)}")
    if steps < 1 or batch_size < 1 or width < 1:
        raise UserError("--steps, --batch-size and --width must be at least 1")
    crops = (crop,) if isinstance(crop, int) else tuple(crop)
    if not crops or any(side < 16 or side % MULTIPLE for side in crops):
        raise UserError(f"--crop must be a multiple of {MULTIPLE} of at least 16 work pixels "
                        f"(got {','.join(map(str, crops))})")
    if not dilations or any(not 1 <= d <= 32 for d in dilations):
        raise UserError(f"--dilations must be whole numbers from 1 to 32, as 2,4,8 "
                        f"(got {','.join(map(str, dilations))})")
    if not 0 < white_weight <= 100:
        raise UserError(f"--white-weight must be above 0 and at most 100 (got {white_weight:g})")
    if not 8 <= work_diameter <= 64:
        raise UserError(f"--work-diameter must be 8 to 64 pixels (got {work_diameter:g})")
    out = Path(out)
    if (out / DESCRIPTION).exists() and not overwrite:
        raise UserError(f"{out} already holds a cell finder; pass --overwrite to replace it")
    yolo_kinds = tuple(yolo_kinds or YOLO_KINDS)
    folds = folds or (DEFAULT_FOLDS if complete else 1)
    if folds > 1 and not complete:
        raise UserError("--fold needs a set that names its fields with every cell labelled (as chula-rbc12); "
                        "without one, fields 7-9 of every ten are held out")
    pairs, _ = labelled_fields(Path(images), Path(labels))
    by_stem = {image.stem: (image, label) for image, label in pairs}
    split = split_fields(sorted(by_stem, key=natural_order), set(complete), fold=fold, folds=folds)
    boxes = label_format == "yolo"
    started = time.time()

    def read(stem: str) -> tuple[np.ndarray, list]:
        image, label = by_stem[stem]
        try:
            rgb = load_rgb(image)
        except ImageReadError as exc:
            raise UserError(f"{image}: {exc}") from None
        return rgb, _read_labels(label, label_format, rgb, yolo_kinds)

    tuning = [(stem, *read(stem)) for stem in split["tuning"]]
    present = {c.kind for _, _, labelled in tuning for c in labelled} | {
        c.kind for stem in split["train"][:50] for c in read(stem)[1]}
    kinds = tuple(k for k in KINDS if k in present)
    if not kinds or not split["train"]:
        raise UserError(f"no labelled red or white cell in {labels}, or too few fields to train on "
                        f"({len(pairs)} labelled)")
    # The scale: one diameter for points, each field's boxes for boxes (and the ratio to the classical measure).
    probes = tuning[:PROBE_FIELDS] if not boxes else tuning
    measured = {stem: find_cells(rgb).cell_diameter for stem, rgb, _ in tqdm(
        probes, desc="measuring cells", disable=not progress, leave=False)}
    if boxes:
        ratios = [_box_diameter(lab) / measured[stem] for stem, _, lab in tuning if _box_diameter(lab)]
        scale = {"mode": "measured", "ratio": round(float(np.median(ratios)), 4) if ratios else 1.0}
    else:
        scale = {"mode": "fixed", "diameter": round(float(np.median(list(measured.values()))), 2)}
    fallback = float(np.median(list(measured.values()))) * scale.get("ratio", 1.0)

    def diameter_of(stem: str, labelled: list) -> float:
        if not boxes:
            return scale["diameter"]
        return (_box_diameter(labelled) or fallback) if stem not in measured else measured[stem] * scale["ratio"]

    complete = set(complete)
    fields = []
    for stem in tqdm(split["train"], desc="reading fields", disable=not progress, leave=False):
        rgb, labelled = read(stem)
        fields.append(_field(stem, rgb, labelled, _box_diameter(labelled) or fallback if boxes else
                             scale["diameter"], kinds, bool(complete) and stem not in complete, boxes, work_diameter))
    fields = [f for f in fields if len(f.centres) or f.trusted is None]
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    model = CentreNet(kinds=len(kinds), width=width, dilations=tuple(dilations))
    kind_weights = torch.tensor([white_weight if kind == "white" else 1.0 for kind in kinds])
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    log, running = ["step,loss,seconds"], []
    model.train()
    for step in tqdm(range(1, steps + 1), desc="training", disable=not progress, leave=False):
        batch = [_crop(fields[i], rng, len(kinds), crops[step % len(crops)], work_diameter)
                 for i in rng.integers(0, len(fields), batch_size)]
        image, trust = torch.stack([b[0] for b in batch]), torch.stack([b[1] for b in batch])
        targets = {name: torch.stack([b[2][name] for b in batch]) for name in batch[0][2]}
        loss = centre_loss(model(image), targets, trust, kind_weights)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        running.append(float(loss.detach()))
        if step % 25 == 0 or step == steps:
            log.append(f"{step},{np.mean(running):.5f},{time.time() - started:.1f}")
            running = []
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file  # only a finished training writes weights

    with atomic_path(out / WEIGHTS) as tmp:
        save_file(model.state_dict(), str(tmp))
    _export(model, out / GRAPH)
    atomic_write(out / "training.csv", "\n".join(log) + "\n")
    description = {
        "task": "cell-finding", "network": "CentreNet", "width": width, "dilations": list(dilations),
        "kinds": list(kinds), "boxes": boxes,
        "work_diameter": work_diameter, "stride": STRIDE, "input": "fields (1, 3, H, W): RGB at work scale, each "
        "channel minus its mean over the field over its standard deviation + 8; H, W multiples of 4",
        "outputs": {"heat": "(1, kinds, H/2, W/2) in 0..1", "log_size": "(1, 2, H/2, W/2): log(width, height / "
                    "red-cell diameter)", "offset": "(1, 2, H/2, W/2): x, y from each output pixel to the nearest "
                    "centre, in output pixels"}, "offset": True,
        "scale": scale, "scale_check": boxes, "thresholds": {kind: 0.3 for kind in kinds}, "dataset": dataset,
        "images": str(images), "labels": str(labels), "label_format": label_format, "border": border,
        "fields": split, "fold": [fold, folds],
        "train": {"steps": steps, "batch_size": batch_size, "crop": crops[0] if len(crops) == 1 else list(crops),
                  "white_weight": white_weight, "seed": seed, "fields": len(fields),
                  "cells": int(sum(len(f.centres) for f in fields)), "first_loss": float(log[1].split(",")[1]),
                  "last_loss": float(log[-1].split(",")[1]), "seconds": round(time.time() - started, 1),
                  "threads": threads},
        "version": __version__,
    }
    atomic_write(out / DESCRIPTION, json.dumps(description, indent=2) + "\n")
    finder = LearnedFinder(out, threads=threads)
    tuning_fields = [TuningField(rgb, labelled, diameter_of(stem, labelled), _trusted(
        rgb, labelled, diameter_of(stem, labelled), work_diameter) if complete and stem not in complete else None)
        for stem, rgb, labelled in tuning]
    description.update(choose_decoding(finder, tuning_fields, label_format=label_format, border=border, kinds=kinds))
    description["train"]["seconds"] = round(time.time() - started, 1)
    atomic_write(out / DESCRIPTION, json.dumps(description, indent=2) + "\n")
    return description


def _trusted(rgb: np.ndarray, labelled: list, diameter: float, work_diameter: float) -> np.ndarray:
    """Where a field labelled in part can be scored, at work scale (see ``learned_tune``)."""
    return _field("", rgb, labelled, diameter, KINDS, True, False, work_diameter).trusted
