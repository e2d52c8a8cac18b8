"""Screening metrics as pure functions, with bootstrap intervals resampled by group.

``compute_metrics(y_true, proba, classes=..., positive=...)`` returns a plain
dict whose keys are the metric names used everywhere (``accuracy``,
``balanced_accuracy``, ``sensitivity``, ``specificity``, ``precision``, ``f1``,
``weighted_f1``, ``mcc``, ``roc_auc``, ``pr_auc``, ``confusion_matrix``, and the
calibration measures ``ece`` and ``brier``).
``bootstrap_intervals`` resamples whole groups (slides, patients) with
replacement, because cells of one slide are not independent: resampling cells
would give intervals that are too narrow.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn import metrics as skm

from cellscreen.evaluate.calibration import brier_score, expected_calibration_error

__all__ = ["compute_metrics", "bootstrap_intervals", "per_group_results", "SCALAR_METRICS"]

SCALAR_METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "precision", "f1",
                  "weighted_f1", "mcc", "roc_auc", "pr_auc")


def _safe(fn, *args, **kwargs) -> float:
    """A metric that is undefined on this sample (one class only) is NaN, not an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return float(fn(*args, **kwargs))
        except ValueError:
            return float("nan")


def compute_metrics(y_true: np.ndarray, proba: np.ndarray, *, classes: list[str], positive: str | None = None,
                    threshold: float = 0.5) -> dict:
    """All metrics for integer labels ``y_true`` and class probabilities ``proba`` (N, C).

    Binary tasks (``positive`` given) report sensitivity/specificity/precision/F1
    of the positive class and threshold its probability at ``threshold``;
    multi-class tasks use argmax and report macro averages plus a per-class table.
    """
    y_true = np.asarray(y_true)
    proba = np.asarray(proba, dtype=np.float64)
    n_classes = len(classes)
    labels = list(range(n_classes))
    binary = positive is not None and n_classes == 2
    if binary:
        pos = classes.index(positive)
        y_pred = np.where(proba[:, pos] >= threshold, pos, 1 - pos)
    else:
        y_pred = proba.argmax(1)
    cm = skm.confusion_matrix(y_true, y_pred, labels=labels)
    result: dict = {
        "n": int(len(y_true)),
        "accuracy": _safe(skm.accuracy_score, y_true, y_pred),
        "balanced_accuracy": _safe(skm.balanced_accuracy_score, y_true, y_pred),
        "weighted_f1": _safe(skm.f1_score, y_true, y_pred, labels=labels, average="weighted", zero_division=0),
        "mcc": _safe(skm.matthews_corrcoef, y_true, y_pred),
        "confusion_matrix": cm.tolist(),
        "ece": expected_calibration_error(y_true, proba),
        "brier": brier_score(y_true, proba),
    }
    if binary:
        y_pos = (y_true == pos).astype(int)
        p_pos = (y_pred == pos).astype(int)
        result.update(
            sensitivity=_safe(skm.recall_score, y_pos, p_pos, zero_division=0),
            specificity=_safe(skm.recall_score, 1 - y_pos, 1 - p_pos, zero_division=0),
            precision=_safe(skm.precision_score, y_pos, p_pos, zero_division=0),
            f1=_safe(skm.f1_score, y_pos, p_pos, zero_division=0),
            roc_auc=_safe(skm.roc_auc_score, y_pos, proba[:, pos]),
            pr_auc=_safe(skm.average_precision_score, y_pos, proba[:, pos]),
        )
    else:
        onehot = np.eye(n_classes)[y_true]
        result.update(
            sensitivity=_safe(skm.recall_score, y_true, y_pred, labels=labels, average="macro", zero_division=0),
            specificity=float(np.nanmean(_specificities(cm))),
            precision=_safe(skm.precision_score, y_true, y_pred, labels=labels, average="macro", zero_division=0),
            f1=_safe(skm.f1_score, y_true, y_pred, labels=labels, average="macro", zero_division=0),
            roc_auc=_safe(skm.roc_auc_score, y_true, proba, multi_class="ovr", average="macro", labels=labels),
            pr_auc=_safe(skm.average_precision_score, onehot, proba, average="macro"),
        )
        p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
        spec = _specificities(cm)
        result["per_class"] = {
            name: {"precision": float(p[i]), "recall": float(r[i]), "specificity": float(spec[i]),
                   "f1": float(f[i]), "support": int(s[i])}
            for i, name in enumerate(classes)
        }
    return result


def _specificities(cm: np.ndarray) -> np.ndarray:
    cm = np.asarray(cm, dtype=np.float64)
    total = cm.sum()
    tp = np.diag(cm)
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    tn = total - tp - fp - fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return tn / (tn + fp)


def bootstrap_intervals(y_true: np.ndarray, proba: np.ndarray, groups: list[str], *, classes: list[str],
                        positive: str | None = None, n_boot: int = 1000, seed: int = 0,
                        level: float = 0.95) -> dict[str, list[float]]:
    """``{metric: [low, high]}``: percentile intervals over ``n_boot`` resamples of whole groups."""
    groups = np.asarray(groups)
    unique, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(unique))]
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {name: [] for name in SCALAR_METRICS}
    for _ in range(n_boot):
        chosen = rng.integers(0, len(unique), len(unique))
        rows = np.concatenate([members[g] for g in chosen])
        m = compute_metrics(y_true[rows], proba[rows], classes=classes, positive=positive)
        for name in SCALAR_METRICS:
            samples[name].append(m[name])
    alpha = (1 - level) / 2
    return {
        name: [float(np.nanquantile(v, alpha)), float(np.nanquantile(v, 1 - alpha))]
        if np.isfinite(v).any() else [float("nan"), float("nan")]
        for name, v in ((k, np.asarray(vals)) for k, vals in samples.items())
    }


def per_group_results(y_true: np.ndarray, proba: np.ndarray, groups: list[str], *, classes: list[str],
                      positive: str | None = None) -> list[dict]:
    """One row per group: cells, errors, accuracy and (binary) the positive fraction, true and predicted."""
    y_pred = proba.argmax(1)
    if positive is not None and len(classes) == 2:
        pos = classes.index(positive)
        y_pred = np.where(proba[:, pos] >= 0.5, pos, 1 - pos)
    rows = []
    groups = np.asarray(groups)
    for group in sorted(set(groups.tolist())):
        idx = groups == group
        row = {"group": group, "cells": int(idx.sum()), "errors": int((y_pred[idx] != y_true[idx]).sum()),
               "accuracy": float((y_pred[idx] == y_true[idx]).mean())}
        if positive is not None and len(classes) == 2:
            row["true_positive_fraction"] = float((y_true[idx] == pos).mean())
            row["predicted_positive_fraction"] = float((y_pred[idx] == pos).mean())
        rows.append(row)
    return sorted(rows, key=lambda r: (-r["errors"], r["group"]))
