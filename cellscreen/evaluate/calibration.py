"""Calibration: how far predicted probabilities are from observed frequencies, and temperature scaling.

``expected_calibration_error`` bins cells by the confidence of their
predicted class (15 equal-width bins) and averages |accuracy - confidence|
weighted by bin size; ``brier_score`` is the mean squared distance between the
probability vector and the one-hot truth.  ``fit_temperature`` finds the
single temperature T that minimises the negative log-likelihood of
``softmax(logits / T)`` on held-out cells (Guo et al., 2017): it changes no
prediction, only how confident they are.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["expected_calibration_error", "brier_score", "fit_temperature", "reliability_bins"]


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


def _nll(logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> float:
    scaled = logits / temperature
    if logits.shape[1] == 1:
        return float(torch.nn.functional.binary_cross_entropy_with_logits(scaled[:, 0], targets.float()))
    return float(torch.nn.functional.cross_entropy(scaled, targets))


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> tuple[float, float, float]:
    """The temperature minimising the NLL of ``logits`` (``(N, C)``, or ``(N, 1)`` for one sigmoid output);
    returns ``(temperature, nll_before, nll_after)``."""
    from scipy.optimize import minimize_scalar

    logits_t = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    targets = torch.as_tensor(np.asarray(y_true), dtype=torch.int64)
    found = minimize_scalar(lambda log_t: _nll(logits_t, targets, float(np.exp(log_t))), bounds=(-3, 3),
                            method="bounded")
    temperature = float(np.exp(found.x))
    return temperature, _nll(logits_t, targets, 1.0), _nll(logits_t, targets, temperature)
