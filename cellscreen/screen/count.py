"""Counting a field's cells, and a sample's, the way a thin film is read.

Parasitemia on a thin film is the share of red cells that are infected. Only
cells that can be judged are counted: single red cells (not clumps,
overlapping cells, platelets or debris) that the image border does not cut.
Objects that do not look like single red cells are *flagged*, and a field
where many are flagged is warned about, since its count is less sure. A
sample (one patient's slide: a folder of fields, or the part of the file name
a group pattern picks) sums its fields; the WHO-style thin-film count wants
at least 1,000 red cells per sample, so fewer earn a warning.

With ``--cells white`` a leukemia model judges the white cells instead, and
the blast share (blasts over white cells counted, with the same Wilson
interval) is reported per field and sample; a sample with fewer than
``MIN_WHITE_CELLS`` white cells counted is warned about.

Everything here is a pure function of numbers already found; the pipeline
reads and writes the files.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence

import numpy as np

from cellscreen.errors import UserError

__all__ = ["DEFAULT_THRESHOLD", "MIN_RED_CELLS", "MIN_WHITE_CELLS", "MAX_NOT_SINGLE", "CONFIDENCE", "Counts",
           "Parasitemia", "decision_threshold", "call_cells", "call_blasts", "count_field", "parasitemia",
           "field_warnings", "sample_warnings", "sample_of", "check_group_regex"]

DEFAULT_THRESHOLD = 0.5  # positive-class probability at or above which a cell is called positive
MIN_RED_CELLS = 1000  # red cells counted per sample in a WHO-style thin-film parasite count
# White cells counted per sample before a blast share is reported without a warning.  The WHO classification
# reads the blast percentage in blood from a 200-leukocyte differential (500 cells in marrow); a routine
# differential counts 100, which leaves a blast share of 20% (the WHO threshold for acute leukemia) with a 95%
# interval of 13-29%, too wide to tell 20% from 15%; at 200 cells it is 15-26%.
MIN_WHITE_CELLS = 200
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
    white_counted: int = 0  # white cells not cut by the border: the denominator of the blast share
    blasts: int = 0  # of those, called blasts (``--cells white``)

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


def call_blasts(proba: np.ndarray, classes: Sequence[str], blast_classes: Sequence[str],
                threshold: float = DEFAULT_THRESHOLD) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Each white cell's class, whether it is a blast and its blast probability (the summed probability of the
    ``blast_classes``), from class probabilities ``(N, classes)``.

    A cell is a blast when its blast probability reaches ``threshold``; its class is then the likeliest blast
    class, otherwise the likeliest of the others.
    """
    proba = np.asarray(proba, dtype=np.float64).reshape(len(proba), len(classes))
    is_blast = np.isin(list(classes), list(blast_classes))
    blast_probability = proba[:, is_blast].sum(axis=1)
    blast = blast_probability >= threshold
    names = [classes[int(np.where(is_blast if hit else ~is_blast, row, -np.inf).argmax())]
             for hit, row in zip(blast, proba)]
    return names, blast, blast_probability


def count_field(cells: Iterable, positive_ids: Iterable[int], blast_ids: Iterable[int] = ()) -> Counts:
    """Counts of one field from its cells (``kind``, ``single``, ``touches_border``, ``id``, as ``FoundCell``),
    the ids of the red cells called positive and the ids of the white cells called blasts."""
    positive_ids, blast_ids = set(positive_ids), set(blast_ids)
    red_counted = positive = flagged = white = border = white_counted = blasts = 0
    for cell in cells:
        if cell.kind == "white":
            white += 1
            if not cell.touches_border:
                white_counted += 1
                blasts += cell.id in blast_ids
        elif cell.touches_border:
            border += 1
        elif cell.single:
            red_counted += 1
            positive += cell.id in positive_ids
        else:
            flagged += 1
    return Counts(red_counted, positive, flagged, white, border, 1, white_counted, blasts)


def field_warnings(counts: Counts) -> list[str]:
    """What makes one field's count less sure."""
    share = counts.not_single_share
    if share is not None and share > MAX_NOT_SINGLE:
        return [f"{100 * share:.0f}% of red objects are not single cells (clumps, overlaps or debris); "
                "count a thinner part of the film"]
    return []


def sample_warnings(counts: Counts, skipped: int = 0, cells: str = "red") -> list[str]:
    """What makes a sample's count less sure: too few red cells (too few white cells when the ``cells``
    classified are white), many objects that are not single cells, fields that could not be read."""
    warnings = []
    if cells == "white":
        if counts.white_counted < MIN_WHITE_CELLS:
            warnings.append(f"only {counts.white_counted:,} white cells counted; a blast count needs at least "
                            f"{MIN_WHITE_CELLS:,} (photograph more fields)")
    elif counts.red_counted < MIN_RED_CELLS:
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
