"""The decision threshold: the positive-class probability from which a cell is called positive.

By default 0.5.  A lab that must miss few infected cells asks for an operating point instead
(``train --operating-point sensitivity=0.98``): the threshold is then chosen on the validation cells, as the
highest one that still reaches the target (the fewest false alarms for that sensitivity), or the lowest one
that reaches a target specificity.  The checkpoint stores it as ``decision_threshold``, the one name that
evaluate, predict, screen, serve and the exported graph's description read.
"""

from __future__ import annotations

import math

import numpy as np

from cellscreen.config import TrainConfig, parse_operating_point
from cellscreen.errors import UserError

__all__ = ["DEFAULT_THRESHOLD", "choose_threshold", "run_decision", "threshold_of", "predicted_classes"]

DEFAULT_THRESHOLD = 0.5
# a threshold stays strictly between 0 and 1, so that every reader accepts it
_LOWEST, _HIGHEST = 1e-6, 1 - 1e-6


def choose_threshold(is_positive: np.ndarray, p_positive: np.ndarray, operating_point: str) -> dict:
    """The threshold that reaches ``operating_point`` (``"sensitivity=0.98"``) on these cells, and the
    sensitivity and specificity it gives on them."""
    measure, target = parse_operating_point(operating_point)
    is_positive = np.asarray(is_positive, bool)
    scores = np.asarray(p_positive, np.float64)
    positives, negatives = np.sort(scores[is_positive])[::-1], np.sort(scores[~is_positive])
    if not len(positives) or not len(negatives):
        raise UserError("the validation cells hold only one class: no threshold can be chosen on them")
    # to 4 decimals, as people read and type it: rounded down for a sensitivity, up for a specificity, so that
    # the target is still reached
    if measure == "sensitivity":  # at most the k-th highest positive score: k positives reach it
        kth = float(positives[math.ceil(target * len(positives)) - 1])
        threshold = math.floor(kth * 1e4) / 1e4
        threshold = threshold if threshold <= kth else threshold - 1e-4
    else:  # above the k-th lowest negative score: k negatives stay below it
        kth = float(negatives[math.ceil(target * len(negatives)) - 1])
        threshold = math.ceil(kth * 1e4) / 1e4
        threshold = threshold if threshold > kth else threshold + 1e-4
    threshold = min(max(round(threshold, 4), _LOWEST), _HIGHEST)
    return {"threshold": threshold, "operating_point": f"{measure}={target:g}",
            "sensitivity": float((positives >= threshold).mean()),
            "specificity": float((negatives < threshold).mean()),
            "positive_cells": int(len(positives)), "negative_cells": int(len(negatives))}


def run_decision(config: TrainConfig, classes: list[str], positive_class: str | None, y_val: np.ndarray,
                 proba_val) -> dict:
    """What a training run writes into its checkpoint about the decision: ``decision_threshold`` (given, or
    chosen on the validation cells for ``config.operating_point``) and how it was set; empty if neither was
    asked for.  ``proba_val`` is called for the validation probabilities only when they are needed."""
    if config.operating_point is None and config.decision_threshold is None:
        return {}
    if positive_class is None or len(classes) != 2:
        raise UserError("a decision threshold needs a two-class task with a positive class: "
                        "pass --positive CLASS (to split or train)")
    if config.decision_threshold is not None:
        return {"decision_threshold": float(config.decision_threshold),
                "decision": {"set_by": "given", "threshold": float(config.decision_threshold)}}
    pos = classes.index(positive_class)
    chosen = choose_threshold(np.asarray(y_val) == pos, np.asarray(proba_val())[:, pos], config.operating_point)
    return {"decision_threshold": chosen["threshold"], "decision": {"set_by": "validation cells", **chosen}}


def threshold_of(description: dict) -> float:
    """The decision threshold a checkpoint's (or exported graph's) description sets, else 0.5."""
    value = description.get("decision_threshold")
    return DEFAULT_THRESHOLD if value is None else float(value)


def predicted_classes(proba: np.ndarray, classes: list[str], positive_class: str | None,
                      threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Each cell's predicted class index from probabilities ``(N, classes)``: with two classes and a positive
    one, the positive class from ``threshold`` on, else the likeliest class."""
    proba = np.asarray(proba)
    if positive_class is None or len(classes) != 2:
        return proba.argmax(1)
    pos = list(classes).index(positive_class)
    return np.where(proba[:, pos] >= threshold, pos, 1 - pos)
