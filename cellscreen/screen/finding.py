"""How well cells are found on labelled smear fields: what ``cellscreen cells score`` runs.

Each field image with a label file of the same name is searched for cells,
and the cells found are scored against the labelled ones with
``cellscreen.screen.score`` (one-to-one Hungarian matching; a hit within half
the median cell radius and, for boxes, IoU >= 0.5).  The result is pooled
precision, recall and F1 and the median absolute count error per image, each
with a 95% interval over images, for every kind of cell the labels hold
that the finder tells apart (red, white), and one row per image and kind.

For centre labels (Chula) the hit distance comes from the cell size: the
median of the red-cell diameters the finder measured over all the fields
(or the diameter given), so that one fixed rule holds for the whole set.
For boxes it comes from each image's labelled boxes.

Where a set labels most fields only in part (Chula), the cells found beyond
the labelled ones look false: precision, F1 and the count error are then
pooled over the fields whose every cell is labelled (``complete``), recall,
which partial labels do not bias, over every field.

The detector is the classical one (``detect.find_cells``) or a learned one
(``learned:RUN``, a run folder of ``cellscreen cells train``); a learned one
is never scored on the fields it was trained or tuned on: those are left out.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from collections.abc import Collection, Iterator
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from cellscreen.data.images import IMAGE_SUFFIXES, ImageReadError, load_rgb
from cellscreen.errors import UserError
from cellscreen.files import atomic_write
from cellscreen.screen.annotations import YOLO_KINDS, read_point_labels, read_yolo_boxes
from cellscreen.screen.detect import find_cells
from cellscreen.screen.learned import learned_finder
from cellscreen.screen.score import (BORDER_RULES, DetectionScore, Estimate, box_match_distance, match_distance,
                                     score_image, summarise)

__all__ = ["LABEL_FORMATS", "DETECTORS", "FindingResult", "labelled_fields", "natural_order", "score_finding",
           "ROW_COLUMNS"]

LABEL_FORMATS = ("chula", "yolo")  # chula: "x y class" per red cell; yolo: "class cx cy w h" per cell
DETECTORS = ("classical", "learned:RUN")  # RUN: a run folder of `cellscreen cells train`
FOUND_KINDS = ("red", "white")  # the kinds the finder tells apart (platelets and debris are not cells it counts)
ROW_COLUMNS = ["image", "kind", "complete", "labelled", "found", "hits", "left_out", "precision", "recall", "f1",
               "count_error", "max_distance_px", "cell_diameter_px"]


@dataclasses.dataclass
class FindingResult:
    """The pooled scores per kind of cell, and what they were computed with."""

    scores: dict[str, DetectionScore]  # over the fields with every cell labelled, if the set says which
    fields: int  # fields scored
    complete_fields: int | None  # how many of them have every cell labelled (None: all, as far as is known)
    recall_all: dict[str, Estimate]  # recall over every field, labelled in part or not
    unlabelled: int  # field images without a label file, not scored
    max_distance: float | None  # the hit distance for centre labels (px); None for boxes (per image)
    border: str
    seen: int = 0  # fields left out because a learned detector was trained or tuned on them


def natural_order(name: str | Path) -> tuple:
    """Chula's 1.jpg, 2.jpg, ..., 10.jpg in number order; other names alphabetically."""
    name = name.name if isinstance(name, Path) else name
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def labelled_fields(images: Path, labels: Path) -> tuple[list[tuple[Path, Path]], int]:
    """The field images of ``images`` with their label files in ``labels`` (same name, ``.txt``), and how many
    images have none."""
    if not images.is_dir():
        raise UserError(f"no folder of field images at {images}")
    if not labels.is_dir():
        raise UserError(f"no folder of label files at {labels}")
    pairs, unlabelled = [], 0
    for image in sorted(images.iterdir(), key=natural_order):
        if image.suffix.lower() not in IMAGE_SUFFIXES or image.name.startswith("."):
            continue
        label = labels / f"{image.stem}.txt"
        if label.is_file():
            pairs.append((image, label))
        else:
            unlabelled += 1
    if not pairs:
        raise UserError(f"no field image in {images} has a label file in {labels}")
    return pairs, unlabelled


def _found_and_labelled(pairs: list[tuple[Path, Path]], label_format: str, kinds: tuple[str, ...],
                        cell_diameter: float | None, progress: bool, finder) -> Iterator[tuple[Path, object, list]]:
    for image, label in tqdm(pairs, desc="finding cells", unit="field", disable=not progress, leave=False):
        try:
            rgb = load_rgb(image)
        except ImageReadError as exc:
            raise UserError(f"{image}: {exc}") from None
        try:
            if label_format == "chula":
                labelled = read_point_labels(label)
            else:
                labelled = read_yolo_boxes(label, width=rgb.shape[1], height=rgb.shape[0], kinds=kinds)
        except ValueError as exc:
            raise UserError(f"{label} cannot be read as {label_format} labels: {exc}") from None
        yield image, finder(rgb, cell_diameter=cell_diameter), labelled


def score_finding(images: str | Path, labels: str | Path, *, label_format: str, kinds: tuple[str, ...] | None = None,
                  border: str = "keep", detector: str = "classical", cell_diameter: float | None = None,
                  limit: int | None = None, complete: Collection[str] = (), rows_out: str | Path | None = None,
                  progress: bool = True, skip: Collection[str] = ()) -> FindingResult:
    """Find the cells of every labelled field in ``images`` and score them against ``labels``.

    ``kinds`` names the YOLO class ids in order (default: TXL-PBC's white, red, platelet).  ``border`` is how
    found cells cut by the image border are scored (``score.BORDER_RULES``).  ``limit`` scores only the first
    fields (by name).  ``complete`` names the fields (file stems) whose every cell is labelled, where the others
    are labelled in part.  ``rows_out``: a CSV file of one row per image and kind of cell.  ``detector`` is
    ``classical`` or ``learned:RUN``; the fields named in ``skip`` (file stems) and those a learned detector
    was trained or tuned on are left out.
    """
    if label_format not in LABEL_FORMATS:
        raise UserError(f"unknown label format {label_format!r}; choose one of: {', '.join(LABEL_FORMATS)}")
    if border not in BORDER_RULES:
        raise UserError(f"unknown border rule {border!r}; choose one of: {', '.join(BORDER_RULES)}")
    if cell_diameter is not None and not cell_diameter > 0:
        raise UserError(f"--cell-diameter must be a positive number of pixels (got {cell_diameter})")
    kinds = tuple(kinds or (("red",) if label_format == "chula" else YOLO_KINDS))
    pairs, unlabelled = labelled_fields(Path(images), Path(labels))
    finder = learned_finder(detector)
    skip = set(skip) | (finder.seen_fields if finder else set())
    seen = sum(image.stem in skip for image, _ in pairs)
    pairs = [(image, label) for image, label in pairs if image.stem not in skip]
    if not pairs:
        raise UserError(f"every labelled field in {images} was left out (the detector was trained or tuned on "
                        "them)")
    pairs = pairs[:limit] if limit else pairs
    found = list(_found_and_labelled(pairs, label_format, kinds, cell_diameter, progress,
                                     finder.find_cells if finder else find_cells))
    distance = None
    if label_format == "chula":
        diameter = cell_diameter or float(np.median([detection.cell_diameter for _, detection, _ in found]))
        distance = match_distance(diameter)
    scored = [kind for kind in FOUND_KINDS if kind in kinds]
    every: dict[str, list] = {kind: [] for kind in scored}
    whole: dict[str, list] = {kind: [] for kind in scored}
    complete = set(complete)
    rows = []
    for image, detection, labelled in found:
        is_complete = not complete or image.stem in complete
        for kind in scored:
            reach = distance if distance is not None else box_match_distance(labelled, kind=kind)
            score = score_image(detection.cells, labelled, kind=kind, max_distance=reach, border=border)
            every[kind].append(score)
            if is_complete:
                whole[kind].append(score)
            rows.append([str(image), kind, int(is_complete) if complete else "", score.labelled, score.found,
                         score.hits, score.left_out,
                         *(_figure(v) for v in (score.precision, score.recall, score.f1, score.count_error)),
                         _figure(reach), f"{detection.cell_diameter:.2f}"])
    if rows_out is not None:
        _write_rows(Path(rows_out), rows)
    scores = {kind: summarise(s) for kind, s in whole.items() if any(x.labelled for x in s)}
    recall_all = {kind: summarise(s).recall for kind, s in every.items() if any(x.labelled for x in s)}
    return FindingResult(scores=scores, fields=len(found), unlabelled=unlabelled, max_distance=distance,
                         border=border, recall_all=recall_all, seen=seen,
                         complete_fields=len(whole[scored[0]]) if complete and scored else None)


def _figure(value: float) -> str:
    return "" if value != value or value == float("inf") else f"{value:.4f}"  # NaN or no labelled box: empty


def _write_rows(path: Path, rows: list[list]) -> None:
    text = io.StringIO()
    csv.writer(text).writerows([ROW_COLUMNS, *rows])
    atomic_write(path, text.getvalue())
