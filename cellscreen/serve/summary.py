"""Per-sample summaries of a finished prediction file: how many cells, how many flagged, and the share flagged
with its 95% interval.

A sample is a patient or slide: the id the ``group_regex`` reads from a file name (given to ``predict``, else
the one the model was trained with), else the folder holding the file.  A cell is flagged when its predicted
class is the positive one (``predict`` calls it from the model's decision threshold on, with the probability
before it is rounded for the file).  The interval is
Wilson's (``scipy.stats.binomtest(...).proportion_ci``), which keeps sensible bounds when no cell of a sample
is flagged, as in most healthy samples.

``summarise_predictions`` computes the rows; ``write_summary`` writes them as ``OUT.samples.csv`` beside the
prediction file and adds the model's name, version and threshold to its record, ``OUT.json``.
``summarise_uploads`` does the same for what the service answered (its page sends its files in many
requests): single cells as above, and whole fields by their red cells counted, called positive, and the
parasitemia with its interval and the thin-film count's warnings (``cellscreen.screen.count``).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from collections import defaultdict
from pathlib import Path, PurePath

from cellscreen.engine.paths import BUNDLED, resolve_checkpoint
from cellscreen.engine.threshold import threshold_of
from cellscreen.errors import UserError
from cellscreen.files import atomic_write
from cellscreen.screen import count
from cellscreen.serve.graph import onnx_description
from cellscreen.serve.outputs import read_rows

__all__ = ["SampleSummary", "model_description", "validation_card", "sample_of", "summarise_predictions",
           "summarise_uploads", "write_summary", "format_summary", "CONFIDENCE", "MAX_UPLOADS"]

CONFIDENCE = 0.95
MAX_UPLOADS = 100_000  # files one summary request may describe
_FIELD_COUNTS = ("red_counted", "positive", "not_single", "white", "border")


@dataclasses.dataclass(frozen=True)
class SampleSummary:
    """One sample's cells: how many were predicted, how many flagged, the flagged share and its interval."""

    sample: str
    cells: int
    flagged: int
    share: float
    low: float
    high: float


def model_description(model: str | Path) -> dict:
    """What a model says about itself (classes, positive class, threshold, version) without loading it: an
    exported graph's description, else the checkpoint's ``model.json``."""
    if Path(model).suffix == ".onnx":
        return onnx_description(Path(model))
    return json.loads(resolve_checkpoint(model).read_text())


def validation_card(description: dict, source: str | Path | None = None) -> dict:
    """What a model says it was trained and checked on, for the service's page: its dataset, how the split held
    cells out (by patient or slide, or by cell), how many cells it trained and was validated on, the metric it
    was kept for, its decision threshold and how it was set, the labels it learned (the relabel files it was
    trained with, by name and hash) and the cells it learned from outside its dataset, and, when an evaluation
    of its test part lies beside it (``RUN/test/metrics.json``, ``cellscreen evaluate RUN --subset test --out
    RUN/test``; the bundled model's in its folder), its figures with their 95% intervals."""
    origin = description.get("source") or description  # an exported graph's description nests it
    train, split = description.get("train") or {}, origin.get("split") or {}
    config = train.get("config") or {}
    card = {"dataset": description.get("dataset"), "split_method": split.get("method"), "split_by": split.get("by"),
            "leaky": split.get("leaky"), "held_out": {part: config[part] for part in ("val", "test") if part in config},
            "training_cells": train.get("images"), "validation_cells": train.get("val_images"),
            "kept_for": origin.get("metric"), "decision_threshold": threshold_of(description),
            "decision": description.get("decision"), "labels": _labels_learned(description) or _labels_learned(origin),
            "extra_training": [Path(folder).name for folder in _as_list(config.get("extra_train"))], "test": None}
    place = BUNDLED.get(str(source)) or (Path(source) if source else None)  # a run folder, or a file in one
    folder = place if place is not None and place.is_dir() else (
        place.parent if place is not None and place.is_file() else None)
    metrics_path = folder / "test" / "metrics.json" if folder is not None else None
    if metrics_path is not None and metrics_path.is_file():
        try:
            result = json.loads(metrics_path.read_text())
            figures, intervals = result["metrics"], result.get("intervals") or {}
            card["test"] = {"cells": figures.get("n"), "groups": result.get("n_groups"),
                            "group_kind": result.get("group_kind"), "subset": result.get("subset"),
                            "labels": "relabelled" if result.get("relabels") else "the dataset's own", **{
                                name: {"value": figures[name], "ci95": intervals.get(name)}
                                for name in ("accuracy", "sensitivity", "specificity", "roc_auc")
                                if isinstance(figures.get(name), (int, float))}}
        except (ValueError, KeyError, TypeError, OSError):  # a damaged evaluation is left out, not shown wrong
            card["test"] = None
    return card


def _as_list(value) -> list:
    return [] if not value else [value] if isinstance(value, str) else list(value)


def _labels_learned(description: dict) -> dict | None:
    """The relabel files a model was trained with (``{"files": {name: sha256}, "changed", "excluded"}``), None
    for the folder's own labels."""
    relabels = description.get("relabels") or {}
    if not relabels.get("files"):
        return None
    return {"files": {PurePath(path).name: digest for path, digest in relabels["files"].items()},
            "changed": relabels.get("changed"), "excluded": relabels.get("excluded")}


def sample_of(path: str, group_regex: str | None) -> str:
    """The sample a file belongs to: the pattern's first group in its name, else the folder holding it."""
    if group_regex:
        match = re.search(group_regex, PurePath(path).name)
        if match:  # its first group, unless the pattern matched without it
            return match.group(1) if match.groups() and match.group(1) is not None else match.group(0)
    return PurePath(path).parent.name or "."


def _wilson(flagged: int, cells: int) -> tuple[float, float]:
    from scipy.stats import binomtest  # keeps importing the package fast

    interval = binomtest(flagged, cells).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return float(interval.low), float(interval.high)


def summarise_predictions(path: Path, *, positive_class: str, group_regex: str | None = None) -> list[SampleSummary]:
    """One summary per sample of the predicted (``ok``) rows of the prediction file ``path``, by sample name."""
    rows = read_rows(Path(path))
    columns = next(rows)
    if f"p_{positive_class}" not in columns:
        raise UserError(f"{path} has no column p_{positive_class}: it was not written by this model")
    at, status = columns.index("predicted"), columns.index("status")
    cells: dict[str, int] = defaultdict(int)
    flagged: dict[str, int] = defaultdict(int)
    for values in rows:
        if values[status] != "ok":
            continue
        sample = sample_of(values[0], group_regex)
        cells[sample] += 1
        flagged[sample] += values[at] == positive_class
    return _summaries(cells, flagged)


def _summaries(cells: dict[str, int], flagged: dict[str, int]) -> list[SampleSummary]:
    return [SampleSummary(sample, cells[sample], flagged[sample], flagged[sample] / cells[sample],
                          *_wilson(flagged[sample], cells[sample]))
            for sample in sorted(cells, key=_natural)]


def summarise_uploads(uploads: list[dict], *, group_regex: str | None = None) -> list[dict]:
    """One row per sample of the files the service screened, by sample name (JSON-ready).

    Each upload is ``{"path", "kind": "cell", "flagged"}`` or ``{"path", "kind": "field", "red_counted",
    "positive", "not_single", "white", "border"}`` (what ``POST /v1/predict`` answered for it); ``path`` is the
    file's name as sent, a folder in front of it when a folder was picked.  A row holds the sample's single cells
    (``cells``, ``flagged``, ``share`` and its Wilson interval ``low``-``high``) and its fields (their counts
    summed, ``parasitemia`` in percent with its interval, and the thin-film count's ``warnings``).  Raises
    ``ValueError`` naming the first upload that is not one of these, or a pattern that is not a regular
    expression."""
    if not isinstance(uploads, list) or len(uploads) > MAX_UPLOADS:
        raise ValueError(f"'uploads' must be a list of at most {MAX_UPLOADS:,} files")
    if group_regex is not None and not isinstance(group_regex, str):
        raise ValueError("'group_regex' must be a regular expression (a string) or null")
    try:
        count.check_group_regex(group_regex)
    except UserError as exc:
        raise ValueError(str(exc)) from None
    cells: dict[str, int] = defaultdict(int)
    flagged: dict[str, int] = defaultdict(int)
    fields: dict[str, count.Counts] = {}
    for k, upload in enumerate(uploads):
        path, kind = _checked(k, upload)
        sample = sample_of(path, group_regex)
        if kind == "cell":
            cells[sample] += 1
            flagged[sample] += bool(upload["flagged"])
        else:
            red, positive, not_single, white, border = (upload[key] for key in _FIELD_COUNTS)
            field = count.Counts(red_counted=red, positive=positive, flagged=not_single, white=white, border=border)
            fields[sample] = fields[sample] + field if sample in fields else field
    by_sample = {s.sample: s for s in _summaries(cells, flagged)}
    rows = []
    for sample in sorted({*cells, *fields}, key=_natural):
        cell = by_sample.get(sample)
        row = {"sample": sample, "cells": cell.cells if cell else 0, "flagged": cell.flagged if cell else 0,
               "share": cell.share if cell else None, "low": cell.low if cell else None,
               "high": cell.high if cell else None, "fields": 0, **dict.fromkeys(_FIELD_COUNTS, 0),
               "parasitemia": None, "warnings": []}
        if sample in fields:
            counts = fields[sample]
            found = count.parasitemia(counts.positive, counts.red_counted)
            row.update(fields=counts.images, **dict(zip(_FIELD_COUNTS, (
                counts.red_counted, counts.positive, counts.flagged, counts.white, counts.border))),
                parasitemia=dataclasses.asdict(found) if found else None, warnings=count.sample_warnings(counts))
        rows.append(row)
    return rows


def _checked(k: int, upload) -> tuple[str, str]:
    """The path and kind of the ``k``-th upload, or a ``ValueError`` that says what is wrong with it."""
    kind = upload.get("kind") if isinstance(upload, dict) else None
    path = upload.get("path") if isinstance(upload, dict) else None
    if not isinstance(path, str) or not 0 < len(path) <= 4096 or kind not in ("cell", "field"):
        raise ValueError(f"upload {k}: give 'path' (the file's name) and 'kind' ('cell' or 'field')")
    if kind == "cell" and not isinstance(upload.get("flagged"), bool):
        raise ValueError(f"upload {k} ({path}): a cell needs 'flagged' (true or false)")
    if kind == "field":
        values = [upload.get(key) for key in _FIELD_COUNTS]
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 10**9 for v in values):
            raise ValueError(f"upload {k} ({path}): a field needs whole counts {', '.join(_FIELD_COUNTS)}")
        if values[1] > values[0]:
            raise ValueError(f"upload {k} ({path}): more positive cells than red cells counted")
    return path, kind


def _natural(name: str) -> list:
    """Sort key that puts P9 before P10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def write_summary(out: Path, model: str | Path, *, group_regex: str | None = None) -> list[SampleSummary]:
    """Summarise the finished prediction file ``out`` per sample into ``OUT.samples.csv`` and record the
    model's name, version, positive class and threshold (and the per-sample figures) in ``OUT.json``;
    return the summaries (none for a model with no positive class)."""
    out = Path(out)
    description = model_description(model)
    positive, threshold = description.get("positive_class"), threshold_of(description)
    group_regex = group_regex or description.get("group_regex")
    record_path = out.with_name(out.name + ".json")
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    record.update(model_name=description.get("model"), model_version=_version(description),
                  positive_class=positive, decision_threshold=threshold if positive else None,
                  sample_pattern=group_regex)
    summaries = []
    if positive is not None:
        summaries = summarise_predictions(out, positive_class=positive, group_regex=group_regex)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["sample", "cells", "flagged", "flagged_share", "ci95_low", "ci95_high"])
        for s in summaries:
            writer.writerow([s.sample, s.cells, s.flagged, f"{s.share:.4f}", f"{s.low:.4f}", f"{s.high:.4f}"])
        samples_path = out.with_name(out.stem + ".samples.csv")
        atomic_write(samples_path, buffer.getvalue())
        record.update(samples_file=samples_path.name, samples=[dataclasses.asdict(s) for s in summaries])
    atomic_write(record_path, json.dumps(record, indent=2) + "\n")
    return summaries


def _version(description: dict) -> dict:
    """What identifies the model's version: the cellscreen that made it, when, and its weights' digest."""
    source = description.get("source") or {}
    return {"cellscreen": description.get("cellscreen"), "created": description.get("created") or source.get(
        "created"), "weights_sha256": description.get("weights_sha256") or source.get("weights_sha256")}


def format_summary(summaries: list[SampleSummary], positive_class: str | None = None) -> str:
    """The per-sample lines ``predict`` prints."""
    called = f" {positive_class}" if positive_class else ""
    return "\n".join(f"  {s.sample}: {s.flagged:,} of {s.cells:,} cells flagged{called} ({s.share:.1%}, "
                     f"95% CI {s.low:.1%}-{s.high:.1%})" for s in summaries)
