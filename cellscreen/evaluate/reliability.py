"""How reliable predicted probabilities are: how far they are from observed frequencies.

``expected_calibration_error`` bins cells by the confidence of their
predicted class (15 equal-width bins) and averages |accuracy - confidence|
weighted by bin size; ``brier_score`` is the mean squared distance between the
probability vector and the one-hot truth.  (Temperature scaling, which
improves them, is fitted after training: ``cellscreen.engine.temperature``.)
"""

from __future__ import annotations

import numpy as np

__all__ = ["expected_calibration_error", "brier_score", "reliability_bins"]


def reliability_bins(y_true: np.ndarray, proba: np.ndarray, bins: int = 15) -> list[dict]:
    """Per confidence bin: its range, cell count, mean confidence and accuracy (empty bins left out)."""
    y_true, proba = np.asarray(y_true), np.asarray(proba, dtype=np.float64)
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y_true
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for b in range(bins):
        inside = which == b
        if inside.any():
            rows.append({"low": float(edges[b]), "high": float(edges[b + 1]), "n": int(inside.sum()),
                         "confidence": float(confidence[inside].mean()), "accuracy": float(correct[inside].mean())})
    return rows


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, bins: int = 15) -> float:
    rows = reliability_bins(y_true, proba, bins)
    total = sum(r["n"] for r in rows)
    return float(sum(r["n"] * abs(r["accuracy"] - r["confidence"]) for r in rows) / max(total, 1))


def brier_score(y_true: np.ndarray, proba: np.ndarray) -> float:
    proba = np.asarray(proba, dtype=np.float64)
    onehot = np.eye(proba.shape[1])[np.asarray(y_true)]
    return float(((proba - onehot) ** 2).sum(axis=1).mean())
