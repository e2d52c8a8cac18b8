"""Temperature scaling (Guo et al., 2017), fitted on the validation cells after training.

``fit_temperature`` finds the single temperature T that minimises the
negative log-likelihood of ``softmax(logits / T)`` (or ``sigmoid`` for one
output) on held-out cells: it changes no prediction, only how confident they
are.  The checkpoint stores T and inference divides logits by it.  (How far
probabilities are from observed frequencies is measured by
``cellscreen.evaluate.reliability``.)
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize_scalar

__all__ = ["fit_temperature"]


def _nll(logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> float:
    scaled = logits / temperature
    if logits.shape[1] == 1:
        return float(torch.nn.functional.binary_cross_entropy_with_logits(scaled[:, 0], targets.float()))
    return float(torch.nn.functional.cross_entropy(scaled, targets))


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> tuple[float, float, float]:
    """The temperature minimising the NLL of ``logits`` (``(N, C)``, or ``(N, 1)`` for one sigmoid output);
    returns ``(temperature, nll_before, nll_after)``."""
    logits_t = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    targets = torch.as_tensor(np.asarray(y_true), dtype=torch.int64)
    found = minimize_scalar(lambda log_t: _nll(logits_t, targets, float(np.exp(log_t))), bounds=(-3, 3),
                            method="bounded")
    temperature = float(np.exp(found.x))
    return temperature, _nll(logits_t, targets, 1.0), _nll(logits_t, targets, temperature)
