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
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from collections import defaultdict
from pathlib import Path, PurePath

from cellscreen.engine.paths import resolve_checkpoint
from cellscreen.engine.threshold import threshold_of
from cellscreen.errors import UserError
from cellscreen.files import atomic_write
from cellscreen.serve.graph import onnx_description
from cellscreen.serve.outputs import read_rows

__all__ = ["SampleSummary", "model_description", "sample_of", "summarise_predictions", "write_summary",
           "format_summary", "CONFIDENCE"]

CONFIDENCE = 0.95


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


def sample_of(path: str, group_regex: str | None) -> str:
    """The sample a file belongs to: the pattern's first group in its name, else the folder holding it."""
    if group_regex:
        match = re.search(group_regex, PurePath(path).name)
        if match:
            return match.group(1) if match.groups() else match.group(0)
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
    return [SampleSummary(sample, cells[sample], flagged[sample], flagged[sample] / cells[sample],
                          *_wilson(flagged[sample], cells[sample]))
            for sample in sorted(cells, key=_natural)]


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
