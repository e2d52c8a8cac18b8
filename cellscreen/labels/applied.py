"""Relabel files as every command that reads a dataset uses them (``--relabel FILE``, repeatable).

``relabel_index`` applies the files to a freshly scanned index and marks the index with what it applied
(``DatasetIndex.relabels``: each file's SHA-256), so that the split manifest, the run's settings and the
reports made from it say which labels they used.  ``settle_relabels`` decides which files apply when a
split manifest already recorded some: the recorded ones unless others are given, which must then be the
same files (by their SHA-256) or are refused in one line, as for ``--positive``.  ``given_labels`` gives
the folder's own labels back, for reporting a model against both label sets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from cellscreen.data.index import DatasetIndex
from cellscreen.errors import UserError
from cellscreen.labels.relabel import EXCLUDE, Relabels, apply_relabels, load_relabels, read_relabel_rows

__all__ = ["relabel_index", "settle_relabels", "file_hashes", "given_labels", "describe_relabels"]


def relabel_index(index: DatasetIndex, files: Sequence[str | Path]) -> tuple[DatasetIndex, Relabels | None]:
    """``index`` with ``files`` applied in order (the later wins) and its ``relabels`` set to their
    description; ``index`` itself and None when no file is given."""
    files = [str(Path(f).expanduser().resolve()) for f in files or ()]  # recorded so that any folder finds them
    if not files:
        return index, None
    relabels = load_relabels(files, dataset_root=index.root, classes=index.profile.labels,
                             given={r.path: r.label for r in index.records})
    return dataclasses.replace(apply_relabels(index, relabels), relabels=relabels.describe()), relabels


def _hashes(description: dict | None) -> list[str]:
    return list((description or {}).get("files", {}).values())


def file_hashes(files: Sequence[str | Path]) -> list[str]:
    """The SHA-256 of each relabel file, in order (a file that cannot be read or is malformed is refused)."""
    return [read_relabel_rows(f)[1] for f in files or ()]


def settle_relabels(given: Sequence[str | Path], recorded: dict | None, where: str) -> list[str]:
    """The relabel files to apply: ``given`` if ``where`` (a split manifest) recorded none; the recorded
    ones (still there, unchanged) if none are given; ``given`` if they are the same files as the recorded
    ones (by SHA-256, in order); otherwise a one-line refusal."""
    given = [str(Path(f).expanduser().resolve()) for f in given or ()]
    recorded_files = list((recorded or {}).get("files", {}).items())
    if not recorded_files:
        return given
    if not given:
        for path, digest in recorded_files:
            if not Path(path).is_file():
                raise UserError(f"{where} was made with relabel file {path}, which is not there now: give it with "
                                "--relabel (same contents), or make a new split")
            if read_relabel_rows(path)[1] != digest:
                raise UserError(f"relabel file {path} has changed since {where} was made with it (its SHA-256 "
                                "differs): make a new split with it")
        return [path for path, _ in recorded_files]
    if file_hashes(given) != _hashes(recorded):
        names = ", ".join(Path(p).name for p, _ in recorded_files)
        raise UserError(f"--relabel {' '.join(given)} contradicts {where}, which was made with relabel file(s) "
                        f"{names}; leave --relabel out (they are taken from there) or make a new split")
    return given


def given_labels(paths: Sequence[str], labels: Sequence[str], relabels: Relabels) -> list[str]:
    """The labels the dataset folder gives the cells ``paths``, whose labels after relabelling are ``labels``."""
    return [relabels.given.get(path, label) if relabels.labels.get(path, EXCLUDE) != EXCLUDE else label
            for path, label in zip(paths, labels)]


def describe_relabels(description: dict | None) -> str:
    """One line for a terminal or a report: which files gave the labels, with the start of their SHA-256."""
    if not description:
        return "the dataset folder's labels"
    files = ", ".join(f"{Path(path).name} (sha256 {digest[:12]})" for path, digest in description["files"].items())
    return (f"relabelled by {files}: {description.get('changed', 0):,} cell(s) changed, "
            f"{description.get('excluded', 0):,} excluded")
