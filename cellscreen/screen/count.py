"""Counting a field's cells, and a sample's, the way a thin film is read.

Parasitemia on a thin film is the share of red cells that are infected. Only
cells that can be judged are counted: single red cells (not clumps,
overlapping cells, platelets or debris) that the image border does not cut.
Objects that do not look like single red cells are *flagged*, and a field
where many are flagged is warned about, since its count is less sure. A
sample (one patient's slide: a folder of fields, or the part of the file name
a group pattern picks) sums its fields; the WHO-style thin-film count wants
at least 1,000 red cells per sample, so fewer earn a warning.

Everything here is a pure function of numbers already found; the pipeline
reads and writes the files.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence

import numpy as np

from cellscreen.errors import UserError

__all__ = ["DEFAULT_THRESHOLD", "MIN_RED_CELLS", "MAX_NOT_SINGLE", "CONFIDENCE", "Counts", "Parasitemia",
           "decision_threshold", "call_cells", "count_field", "parasitemia", "field_warnings", "sample_warnings",
           "sample_of", "check_group_regex"]

DEFAULT_THRESHOLD = 0.5  # positive-class probability at or above which a cell is called positive
MIN_RED_CELLS = 1000  # red cells counted per sample in a WHO-style thin-film parasite count
MAX_NOT_SINGLE = 0.20  # above this share of flagged objects a count is warned about
CONFIDENCE = 0.95  # of the parasitemia interval


@dataclasses.dataclass(frozen=True)
class Counts:
    """What was counted on one field, or summed over a sample's fields."""

    red_counted: int = 0  # single red cells not cut by the border: the denominator
    positive: int = 0  # of those, called the positive class (parasitized)
    flagged: int = 0  # red objects not cut by the border that do not look like one single red cell
    white: int = 0  # white cells (any, border included)
    border: int = 0  # red objects cut by the image border, never counted
    images: int = 1  # fields summed

    def __add__(self, other: Counts) -> Counts:
        return Counts(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))

    @property
    def not_single_share(self) -> float | None:
        """Flagged objects over all red objects judged (counted or flagged)."""
        judged = self.red_counted + self.flagged
        return self.flagged / judged if judged else None


@dataclasses.dataclass(frozen=True)
class Parasitemia:
    """Positive cells over counted cells, in percent, with its ``CONFIDENCE`` interval (Wilson score)."""

    percent: float
    low: float
    high: float


def parasitemia(positive: int, counted: int, confidence: float = CONFIDENCE) -> Parasitemia | None:
    """``positive`` of ``counted`` red cells as a percentage and its Wilson interval; None when nothing was
    counted.  Wilson's interval keeps sensible bounds at 0 positives, where a lab's count usually is."""
    if counted <= 0:
        return None
    if not 0 <= positive <= counted:
        raise ValueError(f"positive cells ({positive}) must lie between 0 and the counted cells ({counted})")
    from scipy.stats import binomtest  # keeps importing the package fast

    interval = binomtest(positive, counted).proportion_ci(confidence_level=confidence, method="wilson")
    return Parasitemia(100.0 * positive / counted, 100.0 * float(interval.low), 100.0 * float(interval.high))


def decision_threshold(description: dict) -> float:
    """The positive-class probability a model's description sets as its decision threshold (0.5 if none)."""
    value = description.get("decision_threshold", description.get("threshold"))
    if value is None:
        return DEFAULT_THRESHOLD
    value = float(value)
    if not 0.0 < value < 1.0:
        raise UserError(f"the model's decision threshold {value} is not a probability between 0 and 1")
    return value


def call_cells(proba: np.ndarray, classes: Sequence[str], positive_class: str | None,
               threshold: float = DEFAULT_THRESHOLD) -> tuple[list[str], np.ndarray]:
    """Each cell's class and whether it is positive, from class probabilities ``(N, classes)``.

    A cell is positive when the positive class's probability reaches ``threshold``; otherwise its class is
    the likeliest of the others.  A model with no positive class calls the likeliest class and finds no
    positive cell.
    """
    proba = np.asarray(proba, dtype=np.float64).reshape(len(proba), len(classes))
    if positive_class is None:
        return [classes[i] for i in proba.argmax(axis=1)], np.zeros(len(proba), bool)
    pos = list(classes).index(positive_class)
    positive = proba[:, pos] >= threshold
    others = proba.copy()
    others[:, pos] = -np.inf
    names = [positive_class if hit else classes[int(i)] for hit, i in zip(positive, others.argmax(axis=1))]
    return names, positive


def count_field(cells: Iterable, positive_ids: Iterable[int]) -> Counts:
    """Counts of one field from its cells (``kind``, ``single``, ``touches_border``, ``id``, as ``FoundCell``)
    and the ids of the red cells called positive."""
    positive_ids = set(positive_ids)
    red_counted = positive = flagged = white = border = 0
    for cell in cells:
        if cell.kind == "white":
            white += 1
        elif cell.touches_border:
            border += 1
        elif cell.single:
            red_counted += 1
            positive += cell.id in positive_ids
        else:
            flagged += 1
    return Counts(red_counted, positive, flagged, white, border)


def field_warnings(counts: Counts) -> list[str]:
    """What makes one field's count less sure."""
    share = counts.not_single_share
    if share is not None and share > MAX_NOT_SINGLE:
        return [f"{100 * share:.0f}% of red objects are not single cells (clumps, overlaps or debris); "
                "count a thinner part of the film"]
    return []


def sample_warnings(counts: Counts, skipped: int = 0) -> list[str]:
    """What makes a sample's count less sure: too few red cells, many objects that are not single cells,
    fields that could not be read."""
    warnings = []
    if counts.red_counted < MIN_RED_CELLS:
        warnings.append(f"only {counts.red_counted:,} red cells counted; a thin-film count needs at least "
                        f"{MIN_RED_CELLS:,} (photograph more fields)")
    warnings += field_warnings(counts)
    if skipped:
        warnings.append(f"{skipped} image{'s' if skipped > 1 else ''} could not be read")
    return warnings


def check_group_regex(group_regex: str | None) -> re.Pattern | None:
    """The compiled sample pattern, or a ``UserError`` that says what is wrong with it."""
    if group_regex is None:
        return None
    try:
        return re.compile(group_regex)
    except re.error as exc:
        raise UserError(f"the group pattern {group_regex!r} is not a regular expression ({exc})") from None


def sample_of(image: str, group_regex: str | re.Pattern | None = None) -> str:
    """The sample an image belongs to: its folder, or the part of its file name ``group_regex`` picks (its
    first group if it has one, else the whole match; the folder, marked, when the name does not match)."""
    folder, _, name = image.replace("\\", "/").rpartition("/")
    folder = folder or "."
    if group_regex is None:
        return folder
    pattern = check_group_regex(group_regex) if isinstance(group_regex, str) else group_regex
    match = pattern.search(name)
    if match is None:
        return f"{folder} (name does not match the group pattern)"
    return match.group(1) if match.groups() else match.group(0)
