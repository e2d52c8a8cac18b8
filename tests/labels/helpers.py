"""Shared by the label tests: a fake out-of-fold file for a dataset in which some labels were flipped."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cellscreen.labels.oof import OutOfFold, write_oof

CLASSES = ["Uninfected", "Parasitized"]


def fake_oof(index, true_label_of: dict[str, str], path: Path, *, seed: int = 0) -> Path:
    """An ``oof.csv`` for ``index`` (with its given labels) whose probabilities favour each cell's true label
    (``true_label_of``), as a good model that never saw the cell would: 0.7-0.99, and 0.95-0.99 where the
    given label is wrong (a clear cell with a wrong label)."""
    rng = np.random.default_rng(seed)
    records = index.records
    wrong = np.array([true_label_of[r.path] != r.label for r in records])
    confidence = np.where(wrong, rng.uniform(0.95, 0.99, len(records)), rng.uniform(0.7, 0.99, len(records)))
    proba = np.array([[c, 1 - c] if true_label_of[r.path] == "Uninfected" else [1 - c, c]
                      for r, c in zip(records, confidence)])
    folds = [int(r.group[1:]) % 3 for r in records]
    return write_oof(OutOfFold([r.path for r in records], [r.group for r in records], [r.label for r in records],
                               folds, CLASSES, proba), path)
