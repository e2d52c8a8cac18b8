"""Relabel files: corrections to a dataset's labels, kept beside it instead of moving files.

A relabel file is a CSV with a header row and one row per cell::

    path,label
    Parasitized/C100P61ThinF_IMG_20150918_144104_cell_166.png,Uninfected
    Uninfected/C101P62ThinF_IMG_20150923_165215_cell_14.png,exclude

``path`` is relative to the folder holding the class folders (the one ``cellscreen`` indexes), with ``/``
separators; ``label`` is one of the dataset's classes, or ``exclude`` to leave the cell out of everything.
A file with a ``relabelled`` column (the Fuhad et al. 2020 form ``path,label,relabelled``, where ``label``
is what the folder says) takes the new label from ``relabelled``: the last label column wins.  Other
columns (a reviewer, a note) are read past.

Several files can be given; where two name the same cell, the later one wins.  A file that names a cell
twice, a file the dataset does not hold, a class the dataset lacks or a malformed row is refused with a
message naming the file and line.  The data folder is never changed: ``apply_relabels`` returns a new
dataset index.  ``Relabels.describe()`` says which files (and their SHA-256) gave the labels, for manifests,
run settings and reports.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath

from cellscreen.data.index import DatasetIndex, Skipped, scan_dataset
from cellscreen.data.sources import get_profile, resolve_dataset_dir
from cellscreen.errors import UserError
from cellscreen.files import atomic_write

__all__ = ["EXCLUDE", "RelabelFile", "Relabels", "load_relabels", "apply_relabels", "read_relabel_rows",
           "write_relabel_file", "relabelled_index"]

EXCLUDE = "exclude"
NEW_LABEL_COLUMNS = ("relabelled", "label")  # the first one present gives the new label


@dataclasses.dataclass(frozen=True)
class RelabelFile:
    """One relabel file as it was read."""

    path: str
    sha256: str
    rows: int


@dataclasses.dataclass(frozen=True)
class Relabels:
    """The merged decisions of one or more relabel files.

    ``labels`` maps a cell's path to its new label (a class or ``exclude``); ``source`` to the file that
    gave it; ``given`` to the label the dataset folder gives it, where known."""

    labels: dict[str, str]
    source: dict[str, str]
    given: dict[str, str]
    files: tuple[RelabelFile, ...]

    @property
    def changed(self) -> int:
        """Cells given another class than the folder's (``exclude`` and unchanged labels not counted)."""
        return sum(1 for path, label in self.labels.items() if label != EXCLUDE and label != self.given.get(path))

    @property
    def excluded(self) -> int:
        return sum(1 for label in self.labels.values() if label == EXCLUDE)

    def describe(self) -> dict:
        """What a manifest, a run's settings or a report records: each file with its SHA-256 (in the order
        given: the later wins), and how many cells were changed and left out."""
        return {"files": {f.path: f.sha256 for f in self.files}, "changed": self.changed, "excluded": self.excluded}


def _safe_relative(path: str) -> bool:
    """True for a relative path that stays inside the dataset folder (no ``..``, no absolute path)."""
    pure = PurePosixPath(path)
    return bool(path) and not pure.is_absolute() and ".." not in pure.parts and "\\" not in path and ":" not in path


def read_relabel_rows(file: str | Path) -> tuple[list[tuple[int, str, str]], str]:
    """The ``(line, path, new label)`` rows of one relabel file and its SHA-256; refuses a malformed file."""
    file = Path(file)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise UserError(f"relabel file {file} cannot be read: {exc.strerror or exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    try:
        text = data.decode("utf-8-sig")  # a spreadsheet's byte-order mark is not part of the header
    except UnicodeDecodeError:
        raise UserError(f"relabel file {file} is not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    while header is not None and not any(cell.strip() for cell in header):
        header = next(reader, None)
    if header is None:
        raise UserError(f"relabel file {file} is empty; it needs a header row: path,label")
    columns = [cell.strip().lower() for cell in header]
    label_column = next((name for name in NEW_LABEL_COLUMNS if name in columns), None)
    if "path" not in columns or label_column is None:
        raise UserError(f"{file}, line {reader.line_num}: the header must name the columns path and label "
                        f"(or path,label,relabelled); found {','.join(header)}")
    at_path, at_label = columns.index("path"), columns.index(label_column)
    rows = []
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        if len(row) != len(columns):
            raise UserError(f"{file}, line {line}: {len(row)} field(s) where the header has {len(columns)} "
                            f"({','.join(header)})")
        path, label = row[at_path].strip(), row[at_label].strip()
        if not path or not label:
            raise UserError(f"{file}, line {line}: the {'path' if not path else label_column} is empty")
        rows.append((line, path, label))
    return rows, digest


def load_relabels(files: Iterable[str | Path], *, dataset_root: str | Path, classes: Iterable[str],
                  given: Mapping[str, str] | None = None) -> Relabels:
    """Read ``files`` in order (the later wins) against the dataset in ``dataset_root`` (the folder holding
    the class folders) whose classes are ``classes``.

    ``given`` maps each usable cell's path to the label the dataset gives it (``{r.path: r.label for r in
    index.records}``); with it, a path the index does not use (an unreadable file) is refused too, and
    ``describe()`` counts as changed only labels that differ from the given ones.  Without it the given
    label is the cell's class folder (the first part of its path), which holds for datasets whose class
    folders are their classes."""
    if isinstance(files, (str, Path)):  # one file given on its own, not a list of them
        files = [files]
    root = Path(dataset_root)
    classes = tuple(classes)
    allowed = set(classes) | {EXCLUDE}
    labels: dict[str, str] = {}
    source: dict[str, str] = {}
    read: list[RelabelFile] = []
    for file in files:
        rows, digest = read_relabel_rows(file)
        seen: dict[str, int] = {}
        for line, path, label in rows:
            where = f"{file}, line {line}"
            if path in seen:
                raise UserError(f"{where}: {path} is named twice in one file (first on line {seen[path]})")
            seen[path] = line
            if label.lower() == EXCLUDE:
                label = EXCLUDE
            if label not in allowed:
                raise UserError(f"{where}: the dataset has no class {label!r}; its classes are "
                                f"{', '.join(classes)} (or {EXCLUDE} to leave the cell out)")
            if not _safe_relative(path) or not (root / path).is_file():
                raise UserError(f"{where}: {path} is not a file of the dataset in {root} (paths are relative to "
                                "the folder holding the class folders, e.g. Parasitized/NAME.png)")
            if given is not None and path not in given:
                raise UserError(f"{where}: {path} is not a usable image of the dataset (see `cellscreen data info` "
                                "for the files it skips)")
            labels[path] = label
            source[path] = str(file)
        read.append(RelabelFile(path=str(file), sha256=digest, rows=len(rows)))
    if given is None:
        given = {path: PurePosixPath(path).parts[0] for path in labels if PurePosixPath(path).parts[0] in classes}
    return Relabels(labels=labels, source=source, given={p: given[p] for p in labels if p in given},
                    files=tuple(read))


def apply_relabels(index: DatasetIndex, relabels: Relabels) -> DatasetIndex:
    """A new index with the relabelled cells' labels changed and the excluded ones moved to ``skipped``
    (with the file that excluded them), so that every file found is still accounted for."""
    records, skipped = [], list(index.skipped)
    for record in index.records:
        label = relabels.labels.get(record.path)
        if label is None or label == record.label:
            records.append(record)
        elif label == EXCLUDE:
            skipped.append(Skipped(record.path, f"excluded by relabel file {relabels.source[record.path]}"))
        else:
            records.append(dataclasses.replace(record, label=label))
    skipped.sort(key=lambda s: s.path)
    return dataclasses.replace(index, records=records, skipped=skipped, warnings=list(index.warnings))


def write_relabel_file(path: str | Path, rows: Iterable[tuple[str, str]], *, extra: dict[str, list] | None = None
                       ) -> Path:
    """Write ``(path, label)`` rows as a relabel file; ``extra`` adds columns (name -> one value per row)."""
    rows = list(rows)
    extra = extra or {}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "label", *extra])
    for k, (cell, label) in enumerate(rows):
        writer.writerow([cell, label, *(values[k] for values in extra.values())])
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, buffer.getvalue())


def relabelled_index(dataset: str, *, data: str | None = None, relabel: Iterable[str | Path] = (),
                     group_regex: str | None = None, workers: int | None = None, progress: bool = True
                     ) -> tuple[DatasetIndex, Relabels | None]:
    """What a command with ``-d DATASET [--data DIR] [--relabel FILE ...]`` works on: the dataset's index with
    the relabel files applied (in order, the later winning), and the relabels (None without files) for
    its manifest, settings and report to record."""
    profile = get_profile(dataset, group_regex=group_regex)
    index = scan_dataset(resolve_dataset_dir(profile, data), profile, workers=workers, progress=progress)
    files = [relabel] if isinstance(relabel, (str, Path)) else list(relabel)
    if not files:
        return index, None
    relabels = load_relabels(files, dataset_root=index.root, classes=index.profile.labels,
                             given={r.path: r.label for r in index.records})
    return apply_relabels(index, relabels), relabels
