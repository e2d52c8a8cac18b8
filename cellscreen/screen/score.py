"""Score found cells against annotated ones: one-to-one matching, then P/R/F1 and count error.

As in the object-counting literature, a found cell and a labelled cell are
paired by the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``)
on centre distances, so that no labelled cell is ever counted twice. A pair is
a hit when the centres lie within ``max_distance`` (half the median cell
radius) and, where both sides have boxes, their IoU is at least ``min_iou``.
Precision, recall and F1 are pooled over images; the 95% intervals come from
resampling whole images (the cells of one field are not independent).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from cellscreen.errors import UserError
from cellscreen.screen.annotations import LabelledCell
from cellscreen.screen.detect import FoundCell

__all__ = ["ImageScore", "Estimate", "DetectionScore", "BORDER_RULES", "match_cells", "box_iou",
           "score_image", "summarise", "match_distance", "box_match_distance", "pool_score_rows"]

# How found cells cut by the image border are treated, to follow what the annotators did:
# "keep": they are scored like any other (the labels include border cells, as in TXL-PBC);
# "drop": they are left out before matching (the labels leave border cells out, as Chula's mostly do);
# "spare": they may match a label, but one that matches none is no false positive (labels keep some).
BORDER_RULES = ("keep", "drop", "spare")


@dataclass(frozen=True)
class ImageScore:
    """Counts on one image, for one kind of cell."""

    found: int  # found cells scored (those left out for the border are not)
    labelled: int
    hits: int
    left_out: int = 0  # found cells left out because they touch the border

    @property
    def precision(self) -> float:
        return self.hits / self.found if self.found else float("nan")

    @property
    def recall(self) -> float:
        return self.hits / self.labelled if self.labelled else float("nan")

    @property
    def f1(self) -> float:
        total = self.found + self.labelled
        return 2 * self.hits / total if total else float("nan")

    @property
    def count_error(self) -> float:
        """(found - labelled) / labelled; NaN when nothing is labelled."""
        return (self.found - self.labelled) / self.labelled if self.labelled else float("nan")


@dataclass(frozen=True)
class Estimate:
    """A figure with its 95% interval (bootstrap over images)."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


@dataclass(frozen=True)
class DetectionScore:
    """Pooled scores over a set of images."""

    images: int
    found: int
    labelled: int
    hits: int
    precision: Estimate
    recall: Estimate
    f1: Estimate
    median_abs_count_error: Estimate  # per image |found - labelled| / labelled, as a fraction


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4); boxes are (x0, y0, x1, y1)."""
    a = np.asarray(a, float).reshape(-1, 4)
    b = np.asarray(b, float).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_cells(found_centres: np.ndarray, labelled_centres: np.ndarray, *, max_distance: float,
                found_boxes: np.ndarray | None = None, labelled_boxes: np.ndarray | None = None,
                min_iou: float = 0.5) -> list[tuple[int, int]]:
    """One-to-one pairs (found index, labelled index) that count as hits.

    The assignment minimises the total centre distance over the pairs allowed
    (within ``max_distance`` and, with boxes on both sides, IoU >= ``min_iou``).
    """
    found_centres = np.asarray(found_centres, float).reshape(-1, 2)
    labelled_centres = np.asarray(labelled_centres, float).reshape(-1, 2)
    if len(found_centres) == 0 or len(labelled_centres) == 0:
        return []
    distance = np.linalg.norm(found_centres[:, None, :] - labelled_centres[None, :, :], axis=2)
    allowed = distance <= max_distance
    if found_boxes is not None and labelled_boxes is not None:
        allowed &= box_iou(found_boxes, labelled_boxes) >= min_iou
    # A pair not allowed costs more than any allowed assignment could, so it is chosen only when nothing else is
    # left, and then thrown away below.
    cost = np.where(allowed, distance, max_distance * (len(found_centres) + len(labelled_centres) + 1) + 1.0)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if allowed[r, c]]


def match_distance(cell_diameter: float) -> float:
    """Half the cell radius: the largest centre distance that counts as a hit."""
    return cell_diameter / 4


def score_image(found: Sequence[FoundCell], labelled: Sequence[LabelledCell], *, kind: str = "red",
                max_distance: float, border: str = "keep", min_iou: float = 0.5) -> ImageScore:
    """Score the found cells of one ``kind`` against the labelled cells of that kind.

    ``border`` says how found cells cut by the image border are treated (see
    ``BORDER_RULES``). Boxes are compared only when the labels have boxes.
    """
    if border not in BORDER_RULES:
        raise ValueError(f"border must be one of {BORDER_RULES}, got {border!r}")
    found = [c for c in found if c.kind == kind]
    labelled = [c for c in labelled if c.kind == kind]
    left_out = 0
    if border == "drop":
        left_out = sum(c.touches_border for c in found)
        found = [c for c in found if not c.touches_border]
    use_boxes = bool(labelled) and all(c.box is not None for c in labelled)
    pairs = match_cells(
        np.array([c.centre for c in found]), np.array([c.centre for c in labelled]), max_distance=max_distance,
        found_boxes=np.array([c.box for c in found]) if use_boxes else None,
        labelled_boxes=np.array([c.box for c in labelled]) if use_boxes else None, min_iou=min_iou)
    scored = len(found)
    if border == "spare":
        matched = {f for f, _ in pairs}
        spared = sum(1 for i, c in enumerate(found) if c.touches_border and i not in matched)
        scored -= spared
        left_out = spared
    return ImageScore(found=scored, labelled=len(labelled), hits=len(pairs), left_out=left_out)


def _pooled(found: np.ndarray, labelled: np.ndarray, hits: np.ndarray) -> tuple[float, float, float]:
    f, n, h = found.sum(), labelled.sum(), hits.sum()
    precision = h / f if f else float("nan")
    recall = h / n if n else float("nan")
    f1 = 2 * h / (f + n) if f + n else float("nan")
    return precision, recall, f1


def _median_abs_error(found: np.ndarray, labelled: np.ndarray) -> float:
    keep = labelled > 0
    return float(np.median(np.abs(found[keep] - labelled[keep]) / labelled[keep])) if keep.any() else float("nan")


def summarise(scores: Sequence[ImageScore], *, resamples: int = 2000, seed: int = 0,
              confidence: float = 0.95) -> DetectionScore:
    """Pooled precision, recall, F1 and the median absolute count error, with bootstrap intervals over images."""
    if not scores:
        raise ValueError("no image scores to summarise")
    found = np.array([s.found for s in scores], float)
    labelled = np.array([s.labelled for s in scores], float)
    hits = np.array([s.hits for s in scores], float)
    point = (*_pooled(found, labelled, hits), _median_abs_error(found, labelled))
    rng = np.random.default_rng(seed)
    draws = np.array([
        (*_pooled(found[i], labelled[i], hits[i]), _median_abs_error(found[i], labelled[i]))
        for i in rng.integers(0, len(scores), size=(resamples, len(scores)))])
    tail = (1 - confidence) / 2 * 100
    low = np.nanpercentile(draws, tail, axis=0)
    high = np.nanpercentile(draws, 100 - tail, axis=0)
    estimates = [Estimate(float(p), float(lo), float(hi)) for p, lo, hi in zip(point, low, high)]
    return DetectionScore(images=len(scores), found=int(found.sum()), labelled=int(labelled.sum()),
                          hits=int(hits.sum()), precision=estimates[0], recall=estimates[1], f1=estimates[2],
                          median_abs_count_error=estimates[3])


def box_match_distance(labelled: Sequence[LabelledCell], *, kind: str) -> float:
    """Half the median radius of the labelled boxes of ``kind`` on one image (inf when there are none)."""
    radii = [((c.box[2] - c.box[0]) + (c.box[3] - c.box[1])) / 4 for c in labelled if c.kind == kind and c.box]
    return float(np.median(radii)) / 2 if radii else float("inf")


def pool_score_rows(paths: Sequence[str | Path], *, complete_only: bool = True) -> dict[str, DetectionScore]:
    """One score per kind of cell over the per-image rows of several ``cells score`` files, e.g. one per fold
    of a learned finder, each scored on the fields it never saw. With ``complete_only``, only the rows marked
    complete count (all rows when no file marks any). An image scored twice is refused: it would count twice."""
    rows: list[dict] = []
    for path in paths:
        try:
            with open(path, newline="") as text:
                found = list(csv.DictReader(text))
        except OSError as exc:
            raise UserError(f"{path}: cannot read it ({exc.strerror}); give the CSV `cellscreen cells score` "
                            "wrote") from None
        if found and not {"image", "kind", "complete", "labelled", "found", "hits"} <= set(found[0]):
            raise UserError(f"{path}: not a `cellscreen cells score` file (no image/kind/found/hits columns)")
        rows += [{**row, "file": str(path)} for row in found]
    if complete_only and any(row["complete"] == "1" for row in rows):
        rows = [row for row in rows if row["complete"] == "1"]
    seen: dict[tuple[str, str], str] = {}
    scores: dict[str, list[ImageScore]] = defaultdict(list)
    for row in rows:
        key = (row["image"], row["kind"])
        if key in seen:
            raise UserError(f"{row['file']}: {row['image']} ({row['kind']} cells) is scored in {seen[key]} "
                            "too; give files of fields that do not overlap")
        seen[key] = row["file"]
        try:
            scores[row["kind"]].append(ImageScore(found=int(row["found"]), labelled=int(row["labelled"]),
                                                  hits=int(row["hits"]), left_out=int(row.get("left_out") or 0)))
        except ValueError:
            raise UserError(f"{row['file']}: the row of {row['image']} holds a count that is not a whole "
                            "number") from None
    if not scores:
        raise UserError(f"no scored images in {', '.join(map(str, paths))}")
    return {kind: summarise(kind_scores) for kind, kind_scores in scores.items()}
