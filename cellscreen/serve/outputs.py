"""Prediction files: one row per input, the journal an interrupted run resumes from, CSV or Parquet.

A row is the file's path as walked, its predicted class and the probability of
each class, and ``ok``; or the path, empty columns and ``skipped: REASON``.
Rows go first to a journal, ``OUT.partial.csv``; ``finish`` turns a complete
journal into ``OUT`` (renamed for CSV, converted in batches for Parquet).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from cellscreen.data.index import printable_path
from cellscreen.errors import UserError
from cellscreen.files import atomic_path

__all__ = ["FORMATS", "header", "row", "shown", "journal_rows", "check_prefix", "finish", "read_rows",
           "count_rows"]

FORMATS = (".csv", ".parquet")


def shown(path: Path) -> str:
    """The path as written in the results (undecodable bytes as ``\\xe9``)."""
    return printable_path(str(path))


def header(classes: list[str]) -> list[str]:
    return ["path", "predicted", *[f"p_{c}" for c in classes], "status"]


def row(path: Path, classes: list[str], *, proba: np.ndarray | None = None, reason: str | None = None) -> list[str]:
    """One output row: the predicted class and probabilities, or the reason the file was skipped."""
    if reason is not None:
        return [shown(path), "", *[""] * len(classes), f"skipped: {reason}"]
    return [shown(path), classes[int(proba.argmax())], *[f"{v:.6f}" for v in proba], "ok"]


def journal_rows(journal: Path, columns: list[str]) -> int:
    """Complete rows already in an interrupted run's journal (a torn last line is cut off)."""
    with journal.open("rb+") as handle:
        data = handle.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            handle.truncate(end)
    with journal.open(newline="") as handle:
        reader = csv.reader(handle)
        if next(reader, None) != columns:
            raise UserError(f"{journal} was written for another model or classes; start again with --overwrite")
        return sum(1 for _ in reader)


def check_prefix(journal: Path, selected: Iterator[tuple[Path, str | None]], rows: int) -> None:
    """The journal's rows must be the first ``rows`` files of this walk; consumes them from ``selected``."""
    with journal.open(newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        for k, written in enumerate(reader):
            path, _ = next(selected, (None, None))
            if path is None or shown(path) != written[0]:
                raise UserError(f"the inputs changed since the interrupted run (row {k + 2} of {journal} is "
                                f"{written[0]}, the walk now gives {path}); start again with --overwrite")


def finish(journal: Path, out: Path, classes: list[str]) -> None:
    """Turn a complete journal into the output file."""
    if out.suffix.lower() == ".csv":
        os.replace(journal, out)
        return
    _csv_to_parquet(journal, out, classes)
    journal.unlink()


def _csv_to_parquet(source: Path, out: Path, classes: list[str]) -> None:
    try:  # optional dependency
        import pyarrow as pa
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError("Parquet output needs pyarrow (pip install pyarrow); the rows are kept "
                        f"in {source}") from None
    types = {"path": pa.string(), "predicted": pa.string(), "status": pa.string(),
             **{f"p_{c}": pa.float32() for c in classes}}
    reader = pacsv.open_csv(source, convert_options=pacsv.ConvertOptions(column_types=types,
                                                                         strings_can_be_null=False))
    with atomic_path(out) as partial, pq.ParquetWriter(partial, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)


def read_rows(path: Path) -> Iterator[list[str]]:
    """Rows of a prediction file (CSV or Parquet), header first."""
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq  # optional dependency, needed only for Parquet

        table = pq.ParquetFile(path)
        yield list(table.schema_arrow.names)
        for batch in table.iter_batches():
            for values in zip(*[column.to_pylist() for column in batch.columns]):
                yield ["" if v is None else (f"{v:.6f}" if isinstance(v, float) else str(v)) for v in values]
        return
    with path.open(newline="") as handle:
        yield from csv.reader(handle)


def count_rows(path: Path) -> dict[str, int]:
    """How many rows a prediction file has, and how many of them are ``ok``."""
    rows = read_rows(path)
    next(rows)
    counts = {"rows": 0, "ok": 0}
    for written in rows:
        counts["rows"] += 1
        counts["ok"] += written[-1] == "ok"
    return counts
