"""Prediction files: one row per input, the journal an interrupted run resumes from, CSV or Parquet.

A row is the file's path as walked, its predicted class and the probability of
each class, and ``ok``; or the path, empty columns and ``skipped: REASON``.
Rows go first to a journal, ``OUT.partial.csv``; ``finish`` turns a complete
journal into ``OUT`` (renamed for CSV, converted in batches for Parquet).

The journal is written so that a run killed at any moment can go on: its
header is on disk before the first row, rows reach it after every batch, and
a resumed run cuts off a torn last line (``journal_rows``).  A disk that
refuses to write (full, read-only, not ours) stops the run with one line
naming the file and what to do (``output_errors``), and leaves the journal
to resume from.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from cellscreen.data.index import printable_path
from cellscreen.engine.threshold import DEFAULT_THRESHOLD, predicted_classes
from cellscreen.errors import UserError
from cellscreen.files import atomic_path

__all__ = ["FORMATS", "header", "row", "shown", "journal_rows", "check_prefix", "finish", "read_rows",
           "count_rows", "Journal", "output_errors", "check_out_folder"]

FORMATS = (".csv", ".parquet")
SYNC_ROWS = 1024  # rows between two fsyncs of the journal (a kill loses nothing flushed; a power cut may)


def shown(path: Path) -> str:
    """The path as written in the results (undecodable bytes as ``\\xe9``)."""
    return printable_path(str(path))


def header(classes: list[str]) -> list[str]:
    return ["path", "predicted", *[f"p_{c}" for c in classes], "status"]


def row(path: Path, classes: list[str], *, proba: np.ndarray | None = None, reason: str | None = None,
        positive_class: str | None = None, threshold: float = DEFAULT_THRESHOLD) -> list[str]:
    """One output row: the predicted class (the positive one from ``threshold`` on, with two classes) and the
    probabilities to 4 decimals, or the reason the file was skipped."""
    if reason is not None:
        return [shown(path), "", *[""] * len(classes), f"skipped: {reason}"]
    predicted = int(predicted_classes(np.asarray(proba)[None], classes, positive_class, threshold)[0])
    return [shown(path), classes[predicted], *[f"{v:.4f}" for v in proba], "ok"]


def journal_rows(journal: Path, columns: list[str]) -> int:
    """Complete rows already in an interrupted run's journal (a torn last line is cut off)."""
    with journal.open("rb+") as handle:
        size = end = handle.seek(0, os.SEEK_END)
        while end > 0:  # back from the end, a block at a time, to the last line break
            start = max(0, end - 65536)
            handle.seek(start)
            found = handle.read(end - start).rfind(b"\n")
            if found >= 0:
                end = start + found + 1
                break
            end = start
        if end < size:
            handle.truncate(end)
    with journal.open(newline="") as handle:
        reader = csv.reader(handle)
        first = next(reader, None)
        if first is None:  # killed before its header was written: the run starts afresh
            return 0
        if first != columns:
            raise UserError(f"{journal} was written for another model or classes; start again with --overwrite")
        return sum(1 for _ in reader)


class Journal:
    """The journal being written: its header first, then rows appended, flushed after every batch.

    Used as a context manager; leaving it on an error closes the file without writing more, so the journal
    keeps every row flushed so far.
    """

    def __init__(self, path: Path, columns: list[str], *, append: bool):
        self.path = path
        with output_errors(path):
            self._handle = path.open("a" if append else "w", newline="")
        self._writer = csv.writer(self._handle)
        self._unsynced = 0
        if not append:
            try:
                self.write([columns])
                self._sync()  # the header is on disk before any row: a kill from now on leaves a journal to resume
            except UserError as exc:
                self.__exit__(UserError, exc, None)
                raise

    def write(self, rows: list[list[str]]) -> None:
        """Append rows and hand them to the operating system (a killed process loses none of them)."""
        with output_errors(self.path):
            self._writer.writerows(rows)
            self._handle.flush()
            self._unsynced += len(rows)
            if self._unsynced >= SYNC_ROWS:
                self._sync()

    def _sync(self) -> None:
        with output_errors(self.path):
            self._handle.flush()
            os.fsync(self._handle.fileno())
        self._unsynced = 0

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, kind, error, trace) -> None:
        try:
            if kind is None:
                self._sync()
        finally:
            with contextlib.suppress(OSError):  # an error that stopped the run is the one to report
                self._handle.close()


@contextlib.contextmanager
def output_errors(path: Path, journal: Path | None = None) -> Iterator[None]:
    """Turn an ``OSError`` while writing ``path`` into a ``UserError`` saying what to do about it."""
    try:
        yield
    except OSError as exc:
        raise UserError(_write_error(exc, Path(exc.filename) if exc.filename else path,
                                     journal or path)) from None


def _write_error(exc: OSError, path: Path, journal: Path) -> str:
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        full = "no space left on the device" if exc.errno == errno.ENOSPC else "over the disk quota"
        if not journal.exists():
            return f"cannot write {path}: {full}; free some space, then run the same command again"
        kept = "the rows written so far" if path == journal else f"the rows kept in {journal}"
        return (f"cannot write {path}: {full}; free some space, then run the same command with --resume to go on "
                f"after {kept}")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = "the file system is read-only" if exc.errno == errno.EROFS else "permission denied"
        where = f"cannot write {path}" if path.exists() else f"cannot write in {path.parent}"
        return f"{where}: {why}; choose another --out, in a folder you can write to"
    return f"cannot write {path}: {exc.strerror or exc}; check the folder of --out"


def check_out_folder(out: Path) -> None:
    """Refuse an output under a path one of whose folders is a file (before anything is written)."""
    for folder in [out.parent, *out.parent.parents]:
        if folder.exists():
            if not folder.is_dir():
                raise UserError(f"cannot write {out}: {folder} is a file, not a folder; choose another --out")
            return


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
