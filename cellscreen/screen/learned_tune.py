"""Choose how the learned cell finder reads its heat maps, on the tuning fields only.

After training, ``learned_train`` shows the network every tuning field once
and chooses, from those fields alone:

- each kind's centre shift: the median offset, in red-cell diameters, from the
  network's centres to the annotators' own points (where annotators click is
  a habit of the set, not always the cell's middle, and the training crops
  are flipped, so the network cannot learn a one-sided habit itself);
- the closest two peaks of one kind may lie (``SPACINGS``, in red-cell
  diameters), and each kind's peak threshold (``THRESHOLDS``): the pair with
  the best F1 under the same rule as ``cellscreen cells score``.

On a field labelled in part only the cells found where the labels can be
trusted are scored (near a labelled centre or on the background), so that
unlabelled cells are not taken for false finds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from cellscreen.screen.annotations import LabelledCell
from cellscreen.screen.detect import FoundCell
from cellscreen.screen.learned import PEAK_SPACING, LearnedFinder, Peaks
from cellscreen.screen.score import box_match_distance, match_distance, score_image, summarise

__all__ = ["TuningField", "centre_shift", "choose_decoding", "THRESHOLDS", "SPACINGS"]

THRESHOLDS = np.round(np.arange(0.1, 0.75, 0.05), 2)  # peak thresholds tried
SPACINGS = (0.2, 0.3, 0.4, 0.5)  # closest two peaks of one kind, in red-cell diameters, tried
SHIFT_REACH = 0.5  # a centre and a labelled point closer than this (in diameters) are paired to measure the shift
SHIFT_THRESHOLD = 0.3  # only peaks this high are paired to measure the shift


@dataclass
class TuningField:
    """One tuning field: the photograph, its labelled cells, the red-cell diameter it is seen at, and where its
    labels can be trusted (work pixels; None: everywhere)."""

    rgb: np.ndarray
    labelled: list[LabelledCell]
    diameter: float
    trusted: np.ndarray | None


def centre_shift(finder: LearnedFinder, fields: list[TuningField], maps: list[dict], kinds: tuple[str, ...]
                 ) -> dict[str, list[float]]:
    """Each kind's median (x, y) offset from the network's centres to the labelled points they pair with (one to
    one, within ``SHIFT_REACH`` diameters), in red-cell diameters; (0, 0) for a kind with too few pairs."""
    offsets: dict[str, list] = {kind: [] for kind in kinds}
    for field, field_maps in zip(fields, maps):
        peaks, _ = finder.peaks(field.rgb, field.diameter, [SHIFT_THRESHOLD] * len(kinds), shift={},
                                spacing=PEAK_SPACING, maps=field_maps)
        for k, kind in enumerate(kinds):
            found = peaks.centre[peaks.kind == k]
            points = np.array([c.centre for c in field.labelled if c.kind == kind], float).reshape(-1, 2)
            if not len(found) or not len(points):
                continue
            distance = np.linalg.norm(found[:, None] - points[None], axis=2)
            reach = SHIFT_REACH * field.diameter
            rows, cols = linear_sum_assignment(np.where(distance <= reach, distance, 10 * reach))
            offsets[kind] += [(points[c] - found[r]) / field.diameter for r, c in zip(rows, cols)
                              if distance[r, c] <= reach]
    return {kind: [round(float(v), 4) for v in np.median(offsets[kind], axis=0)] if len(offsets[kind]) >= 20
            else [0.0, 0.0] for kind in kinds}


def _found(peaks: Peaks, threshold_of: np.ndarray, field: TuningField, scale: float, kinds: tuple[str, ...],
           boxes: bool) -> list[FoundCell]:
    """The peaks above their kind's threshold as found cells, left out where a field labelled in part is not
    trusted; a cell near the border is marked as touching it."""
    height, width = field.rgb.shape[:2]
    diameter, trusted = field.diameter, field.trusted
    found = []
    for k, (x, y), s, (w, h) in zip(peaks.kind, peaks.centre, peaks.score, peaks.size):
        if s < threshold_of[k]:
            continue
        if trusted is not None and not trusted[min(trusted.shape[0] - 1, max(0, int(round(y * scale)))),
                                               min(trusted.shape[1] - 1, max(0, int(round(x * scale))))]:
            continue
        hw, hh = (w * diameter / 2, h * diameter / 2) if boxes else (diameter / 2,) * 2
        box = (int(round(x - hw)), int(round(y - hh)), int(round(x + hw)), int(round(y + hh)))
        edge = x < diameter / 2 or y < diameter / 2 or x > width - diameter / 2 or y > height - diameter / 2
        found.append(FoundCell(0, kinds[k], (float(x), float(y)), box, 0, True, bool(edge)))
    return found


def choose_decoding(finder: LearnedFinder, fields: list[TuningField], *, label_format: str, border: str,
                    kinds: tuple[str, ...]) -> dict:
    """The centre shift, peak spacing and thresholds chosen on the tuning ``fields`` (see the module's
    docstring), with each kind's tuning F1: ``{"centre_shift", "peak_spacing", "thresholds", "tuning"}``."""
    maps = [finder.heat_of(field.rgb, field.diameter) for field in fields]
    shift = centre_shift(finder, fields, maps, kinds)
    boxes = bool(finder.description.get("boxes"))
    low = [float(THRESHOLDS[0])] * len(kinds)
    best: dict[float, dict[str, tuple[float, float]]] = {}
    for spacing in SPACINGS:
        scores: dict[tuple[str, float], list] = {}
        for field, field_maps in zip(fields, maps):
            peaks, scale = finder.peaks(field.rgb, field.diameter, low, spacing=spacing, shift=shift,
                                        maps=field_maps)
            for threshold in map(float, THRESHOLDS):
                found = _found(peaks, np.full(len(kinds), threshold), field, scale, kinds, boxes)
                for kind in kinds:
                    reach = (match_distance(field.diameter) if label_format == "chula"
                             else box_match_distance(field.labelled, kind=kind))
                    scores.setdefault((kind, threshold), []).append(
                        score_image(found, field.labelled, kind=kind, max_distance=reach, border=border))
        best[spacing] = {}
        for kind in kinds:
            f1 = {t: summarise(scores[(kind, t)], resamples=1).f1.value for t in map(float, THRESHOLDS)
                  if any(s.labelled for s in scores[(kind, t)])}
            threshold = max(f1, key=lambda t: (f1[t], -abs(t - 0.3))) if f1 else 0.3
            best[spacing][kind] = (threshold, f1.get(threshold, float("nan")))
    spacing = max(SPACINGS, key=lambda s: (np.nansum([f for _, f in best[s].values()]), s == PEAK_SPACING))
    return {"centre_shift": shift, "peak_spacing": spacing,
            "thresholds": {kind: best[spacing][kind][0] for kind in kinds},
            "tuning": {kind: round(best[spacing][kind][1], 4) for kind in kinds}}
