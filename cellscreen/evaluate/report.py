"""The evaluation report: ``metrics.json``, ``report.md`` and an ROC plot."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from sklearn.metrics import auc, roc_curve

from cellscreen.evaluate.metrics import SCALAR_METRICS
from cellscreen.figures import pyplot, save_figure
from cellscreen.files import atomic_write
from cellscreen.labels.applied import describe_relabels

__all__ = ["write_report", "plot_roc", "plot_reliability"]


def plot_roc(y_true: np.ndarray, proba: np.ndarray, classes: list[str], positive: str | None, out_png: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    targets = [positive] if positive is not None and len(classes) == 2 else classes
    for name in targets:
        i = classes.index(name)
        if len(np.unique(y_true == i)) < 2:
            continue
        fpr, tpr, _ = roc_curve(y_true == i, proba[:, i])
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8)
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return save_figure(fig, out_png)


def plot_reliability(bins: list[dict], ece: float, out_png: Path) -> Path:
    """Reliability diagram: accuracy against confidence of the predicted class, per bin (bar width = bin)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.bar([b["low"] for b in bins], [b["accuracy"] for b in bins], width=[b["high"] - b["low"] for b in bins],
           align="edge", edgecolor="black", alpha=0.7, label="accuracy")
    ax.plot([b["confidence"] for b in bins], [b["confidence"] for b in bins], "o", color="red", markersize=3,
            label="mean confidence")
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8)
    ax.set_xlabel("confidence of the predicted class")
    ax.set_ylabel("accuracy")
    ax.set_title(f"ECE {ece:.4f}")
    ax.legend(loc="upper left")
    return save_figure(fig, out_png)


def _fmt(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def _with_interval(value, interval) -> str:
    return _fmt(value) + (f" ({_fmt(interval[0])} - {_fmt(interval[1])})" if interval else "")


def _two_label_sets(result: dict) -> list[str]:
    """The same predictions measured against the relabelled labels and the folder's own, side by side."""
    given = result["given_labels"]
    m, ci, g, gci = result["metrics"], result.get("intervals", {}), given["metrics"], given.get("intervals", {})
    lines = ["## Against two label sets", "",
             f"The same {m['n']:,} predictions; the relabel files give {given['cells_relabelled']:,} of these cells "
             "another label than the folder. 95% intervals in brackets.", "",
             "| metric | relabelled | folder's labels | difference |", "|---|---|---|---|"]
    for name in SCALAR_METRICS:
        lines.append(f"| {name} | {_with_interval(m[name], ci.get(name))} | {_with_interval(g[name], gci.get(name))} "
                     f"| {_fmt(m[name] - g[name]) if m[name] is not None and g[name] is not None else 'n/a'} |")
    return lines


def write_report(out: Path, result: dict) -> tuple[Path, Path]:
    """Write ``metrics.json`` and ``report.md`` for one evaluation ``result``."""
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "metrics.json"
    atomic_write(json_path, json.dumps(result, indent=2, allow_nan=True) + "\n")
    m, ci = result["metrics"], result.get("intervals", {})
    lines = [
        f"# Evaluation of `{result['model']}` on {result['dataset']}",
        "",
        f"- data: `{result['root']}`" + (f", subset `{result['subset']}`" if result.get("subset") else ""),
        f"- cells: {m['n']:,} from {result['n_groups']:,} {result['group_kind']}(s); skipped files: {result['skipped']}",
        f"- classes: {', '.join(result['classes'])}" + (f"; positive: {result['positive_class']}" if result.get("positive_class") else ""),
        f"- 95% intervals: bootstrap over "
        + (f"{result['group_kind']}s" if result.get("groups_known", True) else "cells (no patient id known)")
        + f" ({result.get('n_boot', 0)} resamples)",
    ]
    threshold, at_default = result.get("decision_threshold", 0.5), result.get("metrics_at_default_threshold")
    if result.get("positive_class"):
        lines.append(f"- decision threshold: a cell is called {result['positive_class']} from a probability of "
                     f"{threshold:.4g} on" + ("" if at_default else " (the default)"))
    if result.get("relabels"):
        lines.append(f"- labels: {describe_relabels(result['relabels'])}; the metrics below are against these "
                     "labels, and beside the folder's own labels under *Against two label sets*")
    lines += [f"- note: {note}" for note in result.get("notes", [])]
    if result.get("warnings"):
        lines += ["", "## Warnings", ""] + [f"- **{warning}**" for warning in result["warnings"]]
    head = f"| metric | at threshold {threshold:.4g} | 95% interval | at 0.5 |" if at_default else (
        "| metric | value | 95% interval |")
    lines += ["", head, "|---|---|---|" + ("---|" if at_default else "")]
    for name in SCALAR_METRICS:
        low, high = ci.get(name, [None, None])
        interval = f"{_fmt(low)} - {_fmt(high)}" if low is not None else ""
        beside = f" {_fmt(at_default[name])} |" if at_default else ""
        lines.append(f"| {name} | {_fmt(m[name])} | {interval} |{beside}")
    if result.get("given_labels"):
        lines += ["", *_two_label_sets(result)]
    calibration = f"- calibration: ECE {_fmt(m.get('ece'))}, Brier score {_fmt(m.get('brier'))}"
    if "temperature" in m:
        calibration += (f" with temperature scaling (T = {m['temperature']:.3f}); without it ECE "
                        f"{_fmt(m['ece_uncalibrated'])}, Brier score {_fmt(m['brier_uncalibrated'])}")
    lines += ["", calibration]
    lines += ["", "Confusion matrix (rows: true, columns: predicted):", "",
              "| | " + " | ".join(result["classes"]) + " |", "|---" * (len(result["classes"]) + 1) + "|"]
    for name, row in zip(result["classes"], m["confusion_matrix"]):
        lines.append(f"| **{name}** | " + " | ".join(str(v) for v in row) + " |")
    if "per_class" in m:
        lines += ["", "| class | precision | recall | specificity | F1 | support |", "|---|---|---|---|---|---|"]
        for name, c in m["per_class"].items():
            lines.append(f"| {name} | {_fmt(c['precision'])} | {_fmt(c['recall'])} | {_fmt(c['specificity'])} | "
                         f"{_fmt(c['f1'])} | {c['support']} |")
    worst = [g for g in result.get("per_group", []) if g["errors"]][:15]
    if worst:
        lines += ["", f"{result['group_kind'].capitalize()}s with the most errors:", "",
                  "| group | cells | errors | accuracy |", "|---|---|---|---|"]
        lines += [f"| {g['group']} | {g['cells']} | {g['errors']} | {g['accuracy']:.3f} |" for g in worst]
    if (out / "roc.png").is_file():
        lines += ["", "![ROC curve](roc.png)"]
    if (out / "reliability.png").is_file():
        lines += ["", "![Reliability diagram](reliability.png)"]
    md_path = out / "report.md"
    atomic_write(md_path, "\n".join(lines) + "\n")
    return json_path, md_path
