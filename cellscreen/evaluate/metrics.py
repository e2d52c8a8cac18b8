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

from cellscreen.evaluate.reliability import brier_score, expected_calibration_error

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
        if n_classes == 2:  # one-vs-rest of either class is the same curve; scikit-learn wants it as such
            roc_auc = _safe(skm.roc_auc_score, y_true == 1, proba[:, 1])
        else:
            roc_auc = _safe(skm.roc_auc_score, y_true, proba, multi_class="ovr", average="macro", labels=labels)
        result.update(
            sensitivity=_safe(skm.recall_score, y_true, y_pred, labels=labels, average="macro", zero_division=0),
            specificity=float(np.nanmean(_specificities(cm))),
            precision=_safe(skm.precision_score, y_true, y_pred, labels=labels, average="macro", zero_division=0),
            f1=_safe(skm.f1_score, y_true, y_pred, labels=labels, average="macro", zero_division=0),
            roc_auc=roc_auc,
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
                        level: float = 0.95, threshold: float = 0.5) -> dict[str, list[float]]:
    """``{metric: [low, high]}``: percentile intervals over ``n_boot`` resamples of whole groups.

    A resample is a count per group (how often it was drawn), so every metric
    is computed from per-group sums: confusion matrices for the counting
    metrics and, per distinct score, positive and negative counts for ROC AUC
    and PR AUC.  All resamples are done in a few matrix products instead of
    1,000 calls into scikit-learn (about 40 s for 2,000 cells); the figures
    are the ones :func:`compute_metrics` gives on the resampled cells
    (``tests/evaluate/test_metrics.py`` checks this).
    """
    y_true = np.asarray(y_true)
    proba = np.asarray(proba, dtype=np.float64)
    unique, group = np.unique(np.asarray(groups), return_inverse=True)
    n_groups, n_classes = len(unique), len(classes)
    draws = np.random.default_rng(seed).integers(0, n_groups, (n_boot, n_groups))
    weights = np.zeros((n_boot, n_groups))
    np.add.at(weights, (np.arange(n_boot)[:, None], draws), 1.0)  # row b: how often each group was drawn

    pos = classes.index(positive) if positive is not None and n_classes == 2 else None
    y_pred = proba.argmax(1) if pos is None else np.where(proba[:, pos] >= threshold, pos, 1 - pos)
    per_group = np.zeros((n_groups, n_classes, n_classes))
    np.add.at(per_group, (group, y_true, y_pred), 1.0)
    samples = _count_metrics((weights @ per_group.reshape(n_groups, -1)).reshape(n_boot, n_classes, n_classes), pos)
    scored = [pos] if pos is not None else range(n_classes)  # one-vs-rest for several classes, then macro mean
    ranked = [_ranking_metrics(weights, group, y_true == c, proba[:, c]) for c in scored]
    samples["roc_auc"] = np.mean([auc for auc, _ in ranked], 0)
    samples["pr_auc"] = np.mean([ap for _, ap in ranked], 0)

    alpha = (1 - level) / 2
    return {
        name: [float(np.nanquantile(v, alpha)), float(np.nanquantile(v, 1 - alpha))]
        if np.isfinite(v).any() else [float("nan"), float("nan")]
        for name, v in ((name, samples[name]) for name in SCALAR_METRICS)
    }


def _ratio(num: np.ndarray, den: np.ndarray, empty: float = 0.0) -> np.ndarray:
    """``num / den``, with ``empty`` where ``den`` is 0 (scikit-learn's ``zero_division``)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, empty)


def _count_metrics(cm: np.ndarray, pos: int | None) -> dict[str, np.ndarray]:
    """The confusion-matrix metrics of :func:`compute_metrics` for a stack of matrices (B, C, C),
    with scikit-learn's definitions and ``zero_division=0``."""
    n = cm.sum((1, 2))
    tp = np.diagonal(cm, axis1=1, axis2=2)
    support, predicted = cm.sum(2), cm.sum(1)  # true and predicted counts per class
    fp, fn = predicted - tp, support - tp
    recall, precision = _ratio(tp, support), _ratio(tp, predicted)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    covariance = tp.sum(1) * n - (support * predicted).sum(1)  # the multi-class MCC (Gorodkin)
    spread = (n ** 2 - (support ** 2).sum(1)) * (n ** 2 - (predicted ** 2).sum(1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an all-NaN row stays NaN
        out = {
            "accuracy": tp.sum(1) / n,
            "balanced_accuracy": np.nanmean(_ratio(tp, support, np.nan), 1),  # classes seen in y_true
            "weighted_f1": (f1 * support).sum(1) / n,
            "mcc": _ratio(covariance, np.sqrt(np.maximum(spread, 0))),
        }
        if pos is not None:
            out.update(sensitivity=recall[:, pos], specificity=recall[:, 1 - pos], precision=precision[:, pos],
                       f1=f1[:, pos])
        else:
            specificity = _ratio(n[:, None] - tp - fp - fn, n[:, None] - support, np.nan)
            out.update(sensitivity=recall.mean(1), specificity=np.nanmean(specificity, 1),
                       precision=precision.mean(1), f1=f1.mean(1))
    return out


def _ranking_metrics(weights: np.ndarray, group: np.ndarray, positive: np.ndarray, score: np.ndarray,
                     chunk: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """ROC AUC and average precision (as scikit-learn computes them, ties included) of ``score`` for the
    ``positive`` cells, in every resample: one row of ``weights`` per resample, one column per group."""
    values, level = np.unique(score, return_inverse=True)  # ascending distinct scores
    counts = np.zeros((2, weights.shape[1], len(values)))  # negatives and positives per group and score
    np.add.at(counts, (positive.astype(int), group, level), 1.0)
    auc, ap = [], []
    for rows in range(0, len(weights), chunk):  # bounded memory: chunk x distinct scores
        neg, pos = (weights[rows:rows + chunk] @ counts[k] for k in (0, 1))
        n_pos, n_neg = pos.sum(1), neg.sum(1)
        below = np.cumsum(neg, 1) - neg / 2  # negatives scored lower, ties counted half
        auc.append(_ratio((pos * below).sum(1), n_pos * n_neg, np.nan))
        tp, fp = np.cumsum(pos[:, ::-1], 1), np.cumsum(neg[:, ::-1], 1)  # thresholds from the top down
        ap.append(_ratio((pos[:, ::-1] * _ratio(tp, tp + fp)).sum(1), n_pos))
    return np.concatenate(auc), np.concatenate(ap)


def per_group_results(y_true: np.ndarray, proba: np.ndarray, groups: list[str], *, classes: list[str],
                      positive: str | None = None, threshold: float = 0.5) -> list[dict]:
    """One row per group: cells, errors, accuracy and (binary) the positive fraction, true and predicted."""
    y_pred = proba.argmax(1)
    if positive is not None and len(classes) == 2:
        pos = classes.index(positive)
        y_pred = np.where(proba[:, pos] >= threshold, pos, 1 - pos)
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
