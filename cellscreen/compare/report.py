"""The comparison report: one self-contained HTML page and a Markdown twin.

Everything is computed from the run folders ``run_comparison`` left: the test
``predictions.csv`` of every fold (pooled: with k folds each cell is tested
once), the training logs and the checkpoints.  Pictures are written to
``OUT/report_files/`` for the Markdown page and embedded in the HTML page, so
``report.html`` can be mailed on its own.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import auc, precision_recall_curve, roc_curve

from cellscreen.engine.curves import read_epoch_metrics
from cellscreen.errors import UserError
from cellscreen.evaluate.metrics import bootstrap_intervals, compute_metrics, per_group_results
from cellscreen.evaluate.reliability import reliability_bins
from cellscreen.figures import pyplot, save_figure
from cellscreen.files import atomic_path, atomic_write
from cellscreen.labels.applied import describe_relabels

__all__ = ["write_comparison_report"]

TABLE = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "precision", "f1", "mcc", "roc_auc")


def _pooled(entry_dir: Path) -> dict:
    """Out-of-fold predictions of one entry: paths, groups, integer truth, probabilities, classes."""
    rows, classes = [], None
    for predictions in sorted(entry_dir.glob("*/test/predictions.csv")):
        with predictions.open(newline="") as handle:
            reader = csv.DictReader(handle)
            names = [c[2:] for c in reader.fieldnames if c.startswith("p_")]
            classes = classes or names
            rows += list(reader)
    index = {c: i for i, c in enumerate(classes)}
    given = rows and all("given_label" in r for r in rows)  # made with relabel files: the folder's own labels too
    return {"paths": [r["path"] for r in rows], "groups": [r["group"] for r in rows],
            "y": np.array([index[r["label"]] for r in rows]),
            "y_given": np.array([index[r["given_label"]] for r in rows]) if given else None,
            "proba": np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows]), "classes": classes}


def _speed_and_size(run_dir: Path, root: Path, paths: list[str]) -> dict:
    """Params, FLOPs at the input size and inference cells/s (fp32, batches of 256, after a warm-up)."""
    # keeps start-up fast: PyTorch, needed only when the report measures speed
    from cellscreen.data.images import load_prepared
    from cellscreen.engine.inference import predict_proba
    from cellscreen.engine.kinds import load_checkpoint
    from cellscreen.models import count_flops

    checkpoint = load_checkpoint(run_dir)
    config = checkpoint.data_config
    size = config.input_size
    images = np.stack([load_prepared(root / p, size=size, crop=checkpoint.border_crop,
                                     interpolation=config.interpolation) for p in paths[:512]])
    predict_proba(checkpoint.model, images[:64])
    start = time.perf_counter()
    predict_proba(checkpoint.model, images)
    rate = len(images) / (time.perf_counter() - start)
    return {"params": sum(p.numel() for p in checkpoint.model.parameters()),
            "flops": count_flops(checkpoint.model, size), "input_size": size, "cells_per_s": rate,
            "model": checkpoint.meta["model"]}


def _curves(pooled: dict[str, dict], positive: str | None, folder: Path) -> list[tuple[str, Path]]:
    plt = pyplot()
    figures = []
    for kind in ("roc", "pr"):
        fig, ax = plt.subplots(figsize=(5.5, 5))
        for name, p in pooled.items():
            k = p["classes"].index(positive) if positive in p["classes"] else p["proba"].shape[1] - 1
            truth, score = p["y"] == k, p["proba"][:, k]
            if kind == "roc":
                x, y, _ = roc_curve(truth, score)
                ax.plot(x, y, label=f"{name} (AUC {auc(x, y):.4f})")
            else:
                y, x, _ = precision_recall_curve(truth, score)
                ax.plot(x, y, label=f"{name} (AP {auc(x, y):.4f})")
        labels = ("false positive rate", "true positive rate") if kind == "roc" else ("recall", "precision")
        ax.set_xlabel(labels[0])
        ax.set_ylabel(labels[1])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right" if kind == "roc" else "lower left")
        ax.set_title(("ROC" if kind == "roc" else "Precision-recall") + f" curves ({positive or 'last class'})")
        figures.append((f"{'ROC' if kind == 'roc' else 'Precision-recall'} curves on the test cells",
                        save_figure(fig, folder / f"{kind}.png", dpi=100)))
    return figures


def _matrices_and_reliability(pooled: dict[str, dict], metrics: dict[str, dict], folder: Path) -> list[tuple[str, Path]]:
    plt = pyplot()
    n = len(pooled)
    fig, axes = plt.subplots(2, n, figsize=(3.2 * n, 6.2), squeeze=False)
    for column, (name, p) in enumerate(pooled.items()):
        cm = np.array(metrics[name]["confusion_matrix"])
        ax = axes[0, column]
        ax.imshow(cm, cmap="Blues")
        for (i, j), value in np.ndenumerate(cm):
            ax.text(j, i, str(value), ha="center", va="center", fontsize=9,
                    color="white" if value > cm.max() / 2 else "black")
        ax.set_xticks(range(len(p["classes"])), p["classes"], rotation=45, fontsize=7)
        ax.set_yticks(range(len(p["classes"])), p["classes"], fontsize=7)
        ax.set_title(name, fontsize=9)
        bins = reliability_bins(p["y"], p["proba"])
        ax = axes[1, column]
        ax.bar([b["low"] for b in bins], [b["accuracy"] for b in bins], width=[b["high"] - b["low"] for b in bins],
               align="edge", edgecolor="black", alpha=0.7)
        ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8)
        ax.set_title(f"ECE {metrics[name]['ece']:.4f}", fontsize=9)
        ax.set_xlabel("confidence", fontsize=8)
    axes[0, 0].set_ylabel("true class")
    axes[1, 0].set_ylabel("accuracy")
    return [("Confusion matrices (rows: true class) and reliability diagrams",
             save_figure(fig, folder / "matrices.png", dpi=100))]


def _learning_curves(entries_dir: Path, names: list[str], folder: Path) -> list[tuple[str, Path]]:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for number, name in enumerate(names):
        logs = sorted((entries_dir / name).glob("*/logs/csv"))
        if not logs:
            continue
        series = read_epoch_metrics(logs[0])
        colour = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")(number)
        for ax, key in zip(axes, ("loss", "acc")):
            for part, style in (("train", "--"), ("val", "-")):
                values = series.get(f"{part}_{key}", {})
                if values:
                    ax.plot([e + 1 for e in values], list(values.values()), style, color=colour,
                            label=name if part == "val" else None)
    for ax, key in zip(axes, ("loss", "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return [("Learning curves (first fold; dashed: training, solid: validation)",
             save_figure(fig, folder / "learning_curves.png", dpi=100))]


def _grid(root: Path, picks: list[tuple[str, str]], path: Path, tile: int = 80, columns: int = 8) -> Path:
    """Cells in a grid with a caption under each (path, caption)."""
    from PIL import Image, ImageDraw  # keeps start-up fast: only a report with cell pictures needs Pillow

    rows = max(1, (len(picks) + columns - 1) // columns)
    sheet = Image.new("RGB", (columns * tile, rows * (tile + 14)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (rel, caption) in enumerate(picks):
        x, y = (k % columns) * tile, (k // columns) * (tile + 14)
        sheet.paste(Image.open(root / rel).convert("RGB").resize((tile - 4, tile - 4)), (x + 2, y + 2))
        draw.text((x + 2, y + tile - 1), caption[:14], fill="black")
    with atomic_path(path) as partial:
        sheet.save(partial)
    return path


def write_comparison_report(out: Path, entries, *, n_boot: int = 1000) -> Path:
    """Write ``report.html``, ``report.md`` and ``comparison.json`` (the numbers) into ``out``."""
    out = Path(out)
    folder = out / "report_files"
    folder.mkdir(exist_ok=True)
    split_meta = json.loads((out / "split.json").read_text())
    leaky = bool(split_meta.get("leaky"))
    names = [e.name for e in entries]
    pooled = {name: _pooled(out / "runs" / name) for name in names}
    first_test = json.loads(next((out / "runs" / names[0]).glob("*/test/metrics.json")).read_text())
    root, positive, group_kind = Path(first_test["root"]), first_test.get("positive_class"), first_test["group_kind"]

    metrics, intervals, speed, timing = {}, {}, {}, {}
    for name, p in pooled.items():
        metrics[name] = compute_metrics(p["y"], p["proba"], classes=p["classes"], positive=positive)
        intervals[name] = bootstrap_intervals(p["y"], p["proba"], p["groups"], classes=p["classes"],
                                              positive=positive, n_boot=n_boot) if n_boot else {}
        runs = sorted((out / "runs" / name).glob("*/wall_seconds.txt"))
        timing[name] = float(np.mean([float(r.read_text()) for r in runs])) if runs else float("nan")
        speed[name] = _speed_and_size(runs[0].parent if runs else next((out / "runs" / name).iterdir()), root,
                                      p["paths"])
    figures = _learning_curves(out / "runs", names, folder)
    figures += _curves(pooled, positive, folder)
    figures += _matrices_and_reliability(pooled, metrics, folder)

    best = max(names, key=lambda n: metrics[n]["roc_auc"])
    p = pooled[best]
    samples = []
    for k, cls in enumerate(p["classes"]):
        samples += [(p["paths"][i], cls) for i in np.where(p["y"] == k)[0][:8]]
    figures.append(("Sample cells of each class", _grid(root, samples, folder / "samples.png")))
    predicted = p["proba"].argmax(1)
    wrong = np.where(predicted != p["y"])[0]
    wrong = wrong[np.argsort(-p["proba"][wrong, predicted[wrong]])][:24]
    errors = [(p["paths"][i], f"{p['classes'][p['y'][i]][:5]}>{p['classes'][predicted[i]][:5]} "
               f"{p['proba'][i, predicted[i]]:.2f}") for i in wrong]
    if errors:
        figures.append((f"Most confident errors of {best} (true > predicted, confidence)",
                        _grid(root, errors, folder / "errors.png")))

    group_rows = _group_table(pooled)
    relabels = split_meta.get("relabels")
    given = _against_given_labels(pooled, positive, n_boot) if relabels else None
    atomic_write(out / "comparison_results.json", json.dumps(
        {"metrics": metrics, "intervals": intervals, "speed": speed, "train_seconds": timing, "leaky": leaky,
         **({"relabels": relabels, "given_labels": given} if relabels else {})},
        indent=2, default=float) + "\n")
    tag = " (LEAKY)" if leaky else ""
    header = ["entry", "model", *TABLE, "ECE", "params", "GFLOPs", "input", "train s/fold", "cells/s"]
    table = []
    for name in names:
        m, ci, s = metrics[name], intervals[name], speed[name]
        cells = [name, s["model"]]
        for key in TABLE:
            interval = f" ({ci[key][0]:.3f}-{ci[key][1]:.3f})" if key in ci else ""
            cells.append(f"{m[key]:.4f}{interval}{tag}")
        cells += [f"{m['ece']:.4f}", f"{s['params'] / 1e6:.2f} M", f"{s['flops'] / 1e9:.3f}", str(s["input_size"]),
                  f"{timing[name]:.0f}", f"{s['cells_per_s']:,.0f}"]
        table.append(cells)
    protocol = (f"{split_meta.get('method')} split by {'cell (LEAKY: cells of one ' + group_kind + ' on both sides)' if leaky else group_kind}"
                f" ({split_meta.get('n_images', '?')} cells, {split_meta.get('n_groups', '?')} {group_kind}s, seed "
                f"{split_meta.get('seed', '?')})")
    pooling = ("Metrics pool every fold's test predictions (each cell tested once)" if split_meta.get("method") == "kfold"
               else "Metrics are on the test subset's cells")
    intro = [f"Dataset {split_meta.get('dataset')}: {protocol}. {pooling}; 95% intervals from {n_boot} bootstrap "
             f"resamples of whole {group_kind}s. Training settings: {_settings(out)}."]
    tables = [(None, header, table)]
    if relabels:
        intro.append(f"Labels: {describe_relabels(relabels)}. Every entry trained on these labels, and the first "
                     "table measures against them; the second measures the same predictions against the dataset "
                     "folder's own labels.")
        tables.append(("The same predictions against the folder's own labels", ["entry", *TABLE],
                       [[name] + [_with_interval(given[name]["metrics"][key], given[name]["intervals"].get(key))
                                  + tag for key in TABLE] for name in names]))
    _write_markdown(out, intro, tables, figures, group_rows, group_kind)
    return _write_html(out, intro, tables, figures, group_rows, group_kind)


def _with_interval(value: float, interval) -> str:
    return f"{value:.4f}" + (f" ({interval[0]:.3f}-{interval[1]:.3f})" if interval else "")


def _against_given_labels(pooled: dict[str, dict], positive: str | None, n_boot: int) -> dict[str, dict]:
    """Each entry's pooled predictions measured against the dataset folder's own labels."""
    given = {}
    for name, p in pooled.items():
        if p["y_given"] is None:
            raise UserError(f"the test predictions of {name} do not carry the folder's labels (given_label): they "
                            "were made before the comparison's relabel files; delete its runs' test folders and "
                            "run the comparison again")
        m = compute_metrics(p["y_given"], p["proba"], classes=p["classes"], positive=positive)
        given[name] = {"metrics": {key: m[key] for key in ("n", *TABLE)},
                       "cells_relabelled": int((p["y_given"] != p["y"]).sum()),
                       "intervals": bootstrap_intervals(p["y_given"], p["proba"], p["groups"], classes=p["classes"],
                                                        positive=positive, n_boot=n_boot) if n_boot else {}}
    return given


def _settings(out: Path) -> str:
    """The entries and the settings every entry shared, as the comparison recorded them."""
    recorded = json.loads((out / "comparison.json").read_text())
    entries = ", ".join(e["name"] + ("" if e["preset"] == "default" or e["model"] is None else f" ({e['preset']} recipe)")
                        + (f" (preset {e['preset']})" if e["model"] is None else "") for e in recorded["entries"])
    shared = ", ".join(recorded.get("settings") or []) or "each preset's own"
    return f"{shared}; entries: {entries}"


def _group_table(pooled: dict[str, dict]) -> list[list[str]]:
    """Errors per group and entry, the 15 groups with the most errors overall first."""
    per_entry = {}
    for name, p in pooled.items():
        rows = per_group_results(p["y"], p["proba"], p["groups"], classes=p["classes"], positive=None)
        per_entry[name] = {r["group"]: r for r in rows}
    groups = {g for rows in per_entry.values() for g in rows}
    total = {g: sum(rows.get(g, {}).get("errors", 0) for rows in per_entry.values()) for g in groups}
    top = [g for g in sorted(groups, key=lambda g: -total[g]) if total[g]][:15]
    table = []
    for g in top:
        cells = next(rows[g]["cells"] for rows in per_entry.values() if g in rows)
        table.append([g, str(cells)] + [str(per_entry[n].get(g, {}).get("errors", "")) for n in pooled])
    return table


def _write_markdown(out, intro, tables, figures, group_rows, group_kind) -> Path:
    lines = ["# Comparison", "", *intro]
    for caption, header, table in tables:
        lines += ["", f"## {caption}"] if caption else []
        lines += ["", "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in table]
    for caption, path in figures:
        lines += ["", f"## {caption}", "", f"![{caption}]({path.relative_to(out)})"]
    if group_rows:
        names = [row[0] for row in tables[0][2]]
        lines += ["", f"## Errors per {group_kind}", "", f"| {group_kind} | cells | " + " | ".join(names) + " |",
                  "|---" * (2 + len(names)) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in group_rows]
    path = out / "report.md"
    atomic_write(path, "\n".join(lines) + "\n")
    return path


def _write_html(out, intro, tables, figures, group_rows, group_kind) -> Path:
    esc = html.escape
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>cellscreen comparison</title><style>"
             "body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #bbb;padding:3px 6px;text-align:right}th{background:#eee}"
             "td:first-child{text-align:left}img{max-width:100%;border:1px solid #ddd}</style></head><body>",
             "<h1>Comparison</h1>", *[f"<p>{esc(t)}</p>" for t in intro]]
    for k, (caption, header, table) in enumerate(tables):
        parts += [f"<h2>{esc(caption)}</h2>"] if caption else []
        parts.append(f"<table id='{'comparison' if k == 0 else 'given-labels'}'><tr>"
                     + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in table]
        parts.append("</table>")
    for caption, path in figures:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        parts.append(f"<h2>{esc(caption)}</h2><img alt='{esc(caption)}' src='data:image/png;base64,{data}'>")
    if group_rows:
        names = [row[0] for row in tables[0][2]]
        parts.append(f"<h2>Errors per {esc(group_kind)}</h2><table id='groups'><tr><th>{esc(group_kind)}</th>"
                     "<th>cells</th>" + "".join(f"<th>{esc(n)}</th>" for n in names) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in group_rows]
        parts.append("</table>")
    parts.append("</body></html>")
    path = out / "report.html"
    atomic_write(path, "\n".join(parts) + "\n")
    return path
