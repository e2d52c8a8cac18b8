"""Evaluate a checkpoint on any folder laid out like a dataset."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from cellscreen.data.cache import CacheSpec, build_cache
from cellscreen.data.index import scan_dataset
from cellscreen.data.sources import get_profile, resolve_dataset_dir
from cellscreen.data.splits import read_manifest, settle_setting
from cellscreen.engine.kinds import Checkpoint, load_checkpoint
from cellscreen.engine.data import load_subset
from cellscreen.engine.inference import predict_proba_at
from cellscreen.engine.threshold import DEFAULT_THRESHOLD, predicted_classes, threshold_of
from cellscreen.errors import UserError
from cellscreen.evaluate.reliability import brier_score, expected_calibration_error, reliability_bins
from cellscreen.evaluate.caveats import evaluation_warnings
from cellscreen.evaluate.metrics import SCALAR_METRICS, bootstrap_intervals, compute_metrics, per_group_results
from cellscreen.evaluate.report import plot_reliability, plot_roc, write_report
from cellscreen.labels.applied import given_labels, relabel_index, settle_relabels
from cellscreen.serve.runtime import check_precision, load_predictor

__all__ = ["evaluate_checkpoint", "evaluate_arrays", "report_on_subset"]


def evaluate_arrays(checkpoint: Checkpoint, subset, *, n_boot: int = 1000, tta: bool = False,
                    predictor=None, precision: str = "32", given: np.ndarray | None = None) -> dict:
    """Metrics, intervals and per-group rows for one loaded subset.  ``predictor`` (from
    ``load_predictor``: onnxruntime, the int8 graph) computes the probabilities instead of PyTorch;
    ``precision`` is what PyTorch computes in (``"32"``, or ``"bf16"``: bf16 autocast).  ``given``: the
    dataset folder's own labels of relabelled cells (class indices), measured against too, as
    ``given_labels``."""
    classes, positive = checkpoint.classes, checkpoint.positive_class
    threshold = threshold_of(checkpoint.meta) if positive else DEFAULT_THRESHOLD
    images = subset.images.permute(0, 2, 3, 1).numpy()
    temperature = getattr(checkpoint.model, "temperature", 1.0)
    raw = None
    if predictor is None:  # calibrated and, for comparison, uncalibrated: one pass of the model
        proba, raw = predict_proba_at(checkpoint.model, images, [temperature, 1.0], tta=tta, precision=precision)
    else:
        proba = predictor.predict_batched(images, tta=tta)
    y_true = subset.targets.numpy()
    metrics = compute_metrics(y_true, proba, classes=classes, positive=positive, threshold=threshold)
    if temperature != 1.0 and raw is not None:  # the same cells without temperature scaling
        metrics.update(temperature=temperature, ece_uncalibrated=expected_calibration_error(y_true, raw),
                       brier_uncalibrated=brier_score(y_true, raw))
    result = {
        "metrics": metrics,
        "decision_threshold": threshold,
        "reliability": reliability_bins(y_true, proba),
        "per_group": per_group_results(y_true, proba, subset.groups, classes=classes, positive=positive,
                                       threshold=threshold),
        "n_boot": n_boot,
        "n_groups": len(set(subset.groups)),
    }
    if threshold != DEFAULT_THRESHOLD:  # beside the model's own threshold, what the default would give
        at_default = compute_metrics(y_true, proba, classes=classes, positive=positive)
        result["metrics_at_default_threshold"] = {name: at_default[name] for name in SCALAR_METRICS}
    if n_boot:
        result["intervals"] = bootstrap_intervals(y_true, proba, subset.groups, classes=classes, positive=positive,
                                                  n_boot=n_boot, threshold=threshold)
    if given is not None:  # the same predictions against the folder's own labels
        at_given = compute_metrics(given, proba, classes=classes, positive=positive, threshold=threshold)
        result["given_labels"] = {"metrics": {name: at_given[name] for name in ("n", *SCALAR_METRICS)},
                                  "cells_relabelled": int((given != y_true).sum())}
        if n_boot:
            result["given_labels"]["intervals"] = bootstrap_intervals(
                given, proba, subset.groups, classes=classes, positive=positive, n_boot=n_boot, threshold=threshold)
    return result, proba


def given_targets(subset, relabels, classes: list[str]) -> np.ndarray | None:
    """The class indices the dataset folder gives the cells of a relabelled ``subset`` (None without
    relabels)."""
    if relabels is None:
        return None
    labels = given_labels(subset.paths, [classes[t] for t in subset.targets.tolist()], relabels)
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise UserError(f"the folder's labels include class(es) {', '.join(unknown)} that the model does not know "
                        f"({', '.join(classes)}): it cannot be measured against them")
    return np.array([classes.index(label) for label in labels], dtype=np.int64)


def report_on_subset(model: str | Path, subset, *, profile, root: Path, out: Path, subset_name: str,
                     skipped: int = 0, n_boot: int = 1000, notes: list[str] = (), relabels=None) -> tuple[dict, Path]:
    """Evaluate a checkpoint on already-loaded pixels (a training run's test subset)
    and write the report into ``out``; return the result and the report path.  With ``relabels`` (the
    subset's labels came from relabel files), the folder's own labels are measured against too."""
    checkpoint = load_checkpoint(model)
    given = given_targets(subset, relabels, checkpoint.classes)
    result, proba = evaluate_arrays(checkpoint, subset, n_boot=n_boot, given=given)
    if relabels is not None:
        result["relabels"] = relabels.describe()
    result.update(model=str(model), dataset=profile.name, root=str(root), subset=subset_name,
                  classes=checkpoint.classes, positive_class=checkpoint.positive_class, group_kind=profile.group_kind,
                  groups_known=profile.group_regex is not None,
                  skipped=skipped, tta=False, notes=([profile.notes] if profile.notes else []) + list(notes))
    report = _write_outputs(out, result, subset, proba, checkpoint, given=given)
    return result, report


def evaluate_checkpoint(model: str | Path, *, dataset: str | None, out: str | Path, data_dir: str | None = None,
                        data: str | None = None, split: str | None = None, subset: str | None = None,
                        fold: int | None = None, group_regex: str | None = None, positive: str | None = None,
                        n_boot: int = 1000,
                        tta: bool = False, workers: int | None = None, progress: bool = True,
                        engine: str | None = "torch", precision: str = "32", relabel: list[str] = ()) -> dict:
    """Evaluate ``model`` on a dataset folder (optionally one subset of a split manifest), on ``engine``
    (``torch``, or ``onnx``/``int8`` to measure what ``predict --engine`` gives).

    ``model`` may also be an exported ``.onnx`` file on its own (fp32 or 8-bit): its description gives the
    classes and preprocessing, and no PyTorch weights are needed.  ``engine=None`` picks ``onnx`` for such
    a file and ``torch`` otherwise.  ``precision``: ``"32"``, or ``"bf16"`` (PyTorch's bf16 autocast; torch only).

    ``relabel``: relabel files whose labels replace the folder's (a split manifest made with some applies
    them without being told); the report then gives the metrics against both label sets."""
    is_graph = Path(model).suffix == ".onnx"
    engine = engine or ("onnx" if is_graph else "torch")
    if is_graph and engine == "torch":
        raise UserError(f"{model} is an ONNX file; it runs on onnxruntime (use --engine onnx)")
    if engine == "torch":
        check_precision(precision)
        checkpoint, predictor = load_checkpoint(model), None
    else:
        predictor = load_predictor(model, engine=engine, precision=precision)
        kind = predictor.description.get("format")
        if is_graph and engine == "int8" and kind != "onnx-int8":
            raise UserError(f"{model} is not an 8-bit graph (its description says {kind!r}); "
                            "evaluate it with --engine onnx")
        checkpoint = _described(predictor.description)
    positive = settle_setting("positive_class", positive, checkpoint.positive_class, f"the model {model}",
                              remedy="train a model with it")
    if positive is not None and positive not in checkpoint.classes:
        raise UserError(f"--positive {positive} is not one of the model's classes ({', '.join(checkpoint.classes)})")
    checkpoint.meta["positive_class"] = positive if len(checkpoint.classes) == 2 else None
    manifest = read_manifest(split) if split else None
    dataset, group_regex, data_dir = _where_to_read(checkpoint.meta, manifest, split, dataset=dataset,
                                                    group_regex=group_regex, data_dir=data_dir, data=data)
    if manifest is not None:  # the manifest's relabel files, or the same ones given again
        relabel = settle_relabels(relabel, manifest.meta.get("relabels"), split)
    profile = get_profile(dataset, group_regex=group_regex)
    root = resolve_dataset_dir(profile, data_dir, data=data)
    index, relabels = relabel_index(scan_dataset(root, profile, workers=workers, progress=progress), relabel)
    rows = [{"path": r.path, "label": r.label, "group": r.group} for r in index.records]
    group_kind = profile.group_kind
    if manifest is not None:
        column = manifest.column
        wanted = subset if column == "subset" else (str(fold) if fold is not None else None)
        if wanted is None:
            raise UserError("with a split manifest, say which part to evaluate: --subset test (or --fold K)")
        group_of = {row["path"]: row["group"] for row in manifest.rows if row[column] == wanted}
        if not group_of:
            raise UserError(f"{split} has no rows in {column} {wanted!r}")
        # the manifest's patients/slides, so that the intervals are over them (not over cells)
        rows = [{**r, "group": group_of[r["path"]]} for r in rows if r["path"] in group_of]
        group_kind = manifest.meta.get("group_kind", group_kind)
    unknown = sorted({r["label"] for r in rows} - set(checkpoint.classes))
    if unknown:
        raise UserError(f"the folder has class(es) {', '.join(unknown)} that the model does not know "
                        f"({', '.join(checkpoint.classes)})")
    if not rows:
        raise UserError(f"no images to evaluate in {root}")
    wanted_paths = {r["path"] for r in rows}
    records = [r for r in index.records if r.path in wanted_paths]
    config = checkpoint.data_config
    spec = CacheSpec(size=config.input_size, border_crop=checkpoint.border_crop, interpolation=config.interpolation)
    cache = build_cache(root, records, spec, workers=workers, progress=progress)
    loaded = load_subset(cache, rows, {r.path: r.sha256 for r in records}, checkpoint.classes)
    given = given_targets(loaded, relabels, checkpoint.classes)
    result, proba = evaluate_arrays(checkpoint, loaded, n_boot=n_boot, tta=tta, predictor=predictor,
                                    precision=precision, given=given)
    if relabels is not None:
        result["relabels"] = index.relabels
    result.update(
        model=str(model), dataset=profile.name, root=str(root), subset=subset or (f"fold {fold}" if fold is not None else None),
        classes=checkpoint.classes, positive_class=checkpoint.positive_class, group_kind=group_kind,
        groups_known=profile.group_regex is not None,
        skipped=len(index.skipped) + len(cache.skipped), tta=tta, engine=engine,
        precision=precision if predictor is None else None,  # None: the graph's own
        notes=list(index.profile.notes and [index.profile.notes] or []),
    )
    if engine != "torch":
        result["notes"].append(f"probabilities from the {predictor.description.get('format', engine)} graph "
                               f"on onnxruntime (--engine {engine})")
    if checkpoint.meta.get("split", {}).get("leaky"):
        result["notes"].append("LEAKY: the model was trained on a cell-level split")
    _write_outputs(Path(out), result, loaded, proba, checkpoint, given=given)
    return result


def _where_to_read(meta: dict, manifest, split: str | None, *, dataset: str | None, group_regex: str | None,
                   data_dir: str | None, data: str | None) -> tuple[str, str | None, str | None]:
    """The dataset profile, group pattern and folder to evaluate on: as given; else as the split manifest
    recorded them (a contradiction is refused); else, for the folder the model was trained on, as its
    checkpoint recorded them; else the ``folder`` profile, with no pattern."""
    if manifest is not None:
        recorded = manifest.meta
        dataset, group_regex = (settle_setting(name, given, recorded.get(name), split)
                                for name, given in (("dataset", dataset), ("group_regex", group_regex)))
    else:
        recorded = meta
        dataset = dataset or meta.get("dataset") or "folder"
        same_folder = data_dir is None or (meta.get("root") and Path(data_dir).resolve() == Path(meta["root"]))
        if dataset == meta.get("dataset") and same_folder:
            group_regex = group_regex or meta.get("group_regex")
    root = recorded.get("root")
    if data_dir is None and data is None and root and Path(root).is_dir():
        data_dir = root  # the folder the split (or the model) was made from
    return dataset or "folder", group_regex, data_dir


def _described(description: dict) -> Checkpoint:
    """What evaluation reads of a checkpoint (classes, preprocessing, where it came from), taken from an
    exported graph's description, with no network: the graph computes the probabilities."""
    meta = {**description, "split": description.get("split") or (description.get("source") or {}).get("split") or {}}
    return Checkpoint(model=None, meta=meta)


def _write_outputs(out: Path, result: dict, subset, proba: np.ndarray, checkpoint: Checkpoint,
                   given: np.ndarray | None = None) -> Path:
    """``metrics.json``, ``report.md``, the ROC and reliability plots and ``predictions.csv`` (one row per
    cell: path, group, true class, predicted class, class probabilities, and with ``given`` the folder's own
    label last); returns the report path."""
    out.mkdir(parents=True, exist_ok=True)
    classes, y_true = checkpoint.classes, subset.targets.numpy()
    result["warnings"] = evaluation_warnings(result)
    predicted = predicted_classes(proba, classes, checkpoint.positive_class, result["decision_threshold"])
    plot_roc(y_true, proba, classes, checkpoint.positive_class, out / "roc.png")
    plot_reliability(result["reliability"], result["metrics"]["ece"], out / "reliability.png")
    with (out / "predictions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "group", "label", "predicted", *[f"p_{c}" for c in classes],
                         *(["given_label"] if given is not None else [])])
        for k, (path, group, label, call, p) in enumerate(zip(subset.paths, subset.groups, y_true, predicted, proba)):
            writer.writerow([path, group, classes[label], classes[call], *[f"{v:.6f}" for v in p],
                             *([classes[given[k]]] if given is not None else [])])
    return write_report(out, result)[1]
