"""Learning curves (loss and accuracy, train and validation) from Lightning's CSV log."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from cellscreen.figures import pyplot, save_figure

__all__ = ["read_epoch_metrics", "plot_learning_curves"]


def read_epoch_metrics(log_dir: str | Path) -> dict[str, dict[int, float]]:
    """``{metric: {epoch: value}}`` from a CSVLogger folder (all ``version_*/metrics.csv``,
    in order, so a resumed run's later epochs join the earlier ones) or one file."""
    log_dir = Path(log_dir)
    files = [log_dir] if log_dir.is_file() else sorted(log_dir.glob("version_*/metrics.csv"),
                                                       key=lambda p: int(p.parent.name.split("_")[1]))
    series: dict[str, dict[int, float]] = defaultdict(dict)
    for metrics_csv in files:
        with open(metrics_csv, newline="") as handle:
            for row in csv.DictReader(handle):
                if not row.get("epoch"):
                    continue
                epoch = int(float(row["epoch"]))
                for key, value in row.items():
                    if key not in ("epoch", "step") and value not in ("", None):
                        series[key][epoch] = float(value)
    return dict(series)


def plot_learning_curves(log_dir: str | Path, out_png: str | Path, *, title: str = "") -> Path:
    plt = pyplot()
    series = read_epoch_metrics(log_dir)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, kind in zip(axes, ("loss", "acc")):
        for split, style in (("train", "-o"), ("val", "-s")):
            points = series.get(f"{split}_{kind}", {})
            if points:
                epochs = sorted(points)
                ax.plot([e + 1 for e in epochs], [points[e] for e in epochs], style, label=split, markersize=3)
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy" if kind == "acc" else "loss")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title or "learning curves")
    return save_figure(fig, out_png)
