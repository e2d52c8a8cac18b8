"""The folder a screening run writes: its files, and the journals of a run in progress.

A run writes its rows into journals (``cells.partial.csv``,
``images.partial.csv``) beside its settings (``screen.partial.json``), and
gives them their final names only at the end.  This module starts the
journals, refuses to overwrite a finished or an interrupted run unless asked,
takes up an interrupted run after its last finished field, and walks the
inputs (of one shard) in the same order every time.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from cellscreen.data.index import printable_path
from cellscreen.errors import UserError
from cellscreen.files import atomic_write
from cellscreen.serve.predict import list_inputs

__all__ = ["CELLS", "IMAGES", "SAMPLES", "REPORT", "RECORD", "OVERLAYS", "SETTINGS", "COUNT_COLUMNS",
           "IMAGE_COLUMNS", "SAMPLE_COLUMNS", "journal_path", "in_shard", "check_inputs", "shown_path",
           "check_out", "walk_inputs", "open_run", "skipped_row"]

CELLS, IMAGES, SAMPLES, REPORT, RECORD, OVERLAYS = (
    "cells.csv", "images.csv", "samples.csv", "report.html", "screen.json", "overlays")
SETTINGS = "screen.partial.json"  # the settings of a run in progress, kept for its resumption
COUNT_COLUMNS = ["red_counted", "positive", "flagged", "white", "border", "parasitemia_percent", "ci_low",
                 "ci_high", "white_counted", "blasts", "blast_percent", "blast_ci_low", "blast_ci_high", "warnings"]
IMAGE_COLUMNS = ["image", "sample", "status", "width", "height", "cell_diameter_px", "scale", "cells",
                 *COUNT_COLUMNS, "overlay"]
SAMPLE_COLUMNS = ["sample", "images", "skipped", *COUNT_COLUMNS]


def journal_path(out: Path, name: str) -> Path:
    """Where the rows of output ``name`` go while the run is going on."""
    return out / name.replace(".csv", ".partial.csv")


def in_shard(path: Path, shard: tuple[int, int] | None) -> bool:
    """Whether ``path`` is screened in ``shard`` ``(i, n)``: its path's CRC-32 is ``i`` modulo ``n``, as for
    ``predict --shard``, so every machine agrees whatever order its file system lists."""
    return shard is None or zlib.crc32(str(path).encode("utf-8", "surrogateescape")) % shard[1] == shard[0]


def check_inputs(inputs: Sequence[str]) -> None:
    """Refuse an input named on the command line that is missing or not an image file (files found in folders
    are accounted for in ``images.csv`` instead)."""
    for item in inputs:
        if Path(item).is_dir():
            continue
        _, reason = next(iter(list_inputs([item])))
        if reason is not None:
            raise UserError(f"{item}: {reason}")


def shown_path(path: Path) -> str:
    """The path as the results write it (undecodable bytes as ``\\xe9``), as predict writes it."""
    return printable_path(str(path))


def skipped_row(shown: str, reason: str) -> list:
    """The ``images.csv`` row of an input that was not screened, with the reason."""
    return [shown, "", f"skipped: {reason}", *[""] * (len(IMAGE_COLUMNS) - 3)]


def check_out(out: Path, resume: bool, overwrite: bool) -> bool:
    """Whether a journal is resumed; refuses to overwrite a finished run or start over an unfinished one."""
    journal = (out / SETTINGS).exists() or journal_path(out, IMAGES).exists()
    if journal and resume:
        return True  # whatever its end wrote before the interruption is written again
    finished = [name for name in (CELLS, IMAGES, SAMPLES, REPORT, RECORD) if (out / name).exists()]
    if finished and not overwrite:
        raise UserError(f"{out} already holds a screening run ({', '.join(finished)}); pass --overwrite to "
                        "replace it")
    if journal and not overwrite:
        raise UserError(f"{out} holds an interrupted screening run; pass --resume to continue it or "
                        "--overwrite to start again")
    for name in (CELLS, IMAGES, SAMPLES, REPORT, RECORD, SETTINGS, journal_path(out, CELLS).name,
                 journal_path(out, IMAGES).name, "cells.resumed.csv"):
        (out / name).unlink(missing_ok=True)
    for old in (out / OVERLAYS).glob("*.png") if (out / OVERLAYS).is_dir() else ():
        old.unlink()
    return False


def _cut_torn_line(journal: Path) -> None:
    """Cut a journal back to its last whole line (a crash may have torn the one being written)."""
    with journal.open("rb+") as handle:
        position = handle.seek(0, os.SEEK_END)
        while position > 0:
            step = min(1 << 16, position)
            position -= step
            handle.seek(position)
            end = handle.read(step).rfind(b"\n")
            if end >= 0:
                handle.truncate(position + end + 1)
                return
        handle.truncate(0)


def _journal_rows(journal: Path, header: list[str]) -> Iterator[list[str]]:
    """The whole rows of a journal, lazily, after checking its header."""
    with journal.open(newline="") as handle:
        reader = csv.reader(handle)
        if next(reader, None) != header:
            raise UserError(f"{journal} was written for another model or version; start again with --overwrite")
        yield from reader


def _resume(out: Path, settings: dict, cell_header: list[str]) -> list[list[str]]:
    """The finished image rows of an interrupted run; its cell journal is cut back to their cells."""
    before = json.loads((out / SETTINGS).read_text()) if (out / SETTINGS).exists() else {}
    changed = [k for k in settings if k != "started" and before.get(k) != settings[k]]
    if changed:
        raise UserError(f"the interrupted run in {out} was started with other {', '.join(changed)}; start again "
                        "with --overwrite")
    settings["started"] = before.get("started", settings["started"])
    for name in (IMAGES, CELLS):
        _cut_torn_line(journal_path(out, name))
    images = list(_journal_rows(journal_path(out, IMAGES), IMAGE_COLUMNS))
    kept = sum(int(row[IMAGE_COLUMNS.index("cells")] or 0) for row in images)
    cells, copy = journal_path(out, CELLS), out / "cells.resumed.csv"
    with copy.open("w", newline="") as handle:  # the finished fields' cells, without the unfinished one's
        writer = csv.writer(handle)
        writer.writerow(cell_header)
        copied = 0
        for row in itertools.islice(_journal_rows(cells, cell_header), kept):
            writer.writerow(row)
            copied += 1
    if copied != kept:
        raise UserError(f"{cells} lacks cells of finished images (damaged); start again with --overwrite")
    os.replace(copy, cells)
    return images


def walk_inputs(inputs: list[str], shard: tuple[int, int] | None) -> Iterator[tuple[int, tuple[Path, str | None]]]:
    """The inputs of ``shard``, each numbered by its place among all inputs (so overlays of shards never clash)."""
    return ((k, item) for k, item in enumerate(list_inputs(inputs)) if in_shard(item[0], shard))


def open_run(out: Path, settings: dict, cell_header: list[str], resume: bool,
              overwrite: bool) -> tuple[int, Iterator[tuple[int, tuple[Path, str | None]]]]:
    """Start the journals in ``out``, or take up an interrupted run's: how many inputs are done, and the walk
    of the inputs (numbered) after them."""
    inputs, shard = settings["inputs"], tuple(settings["shard"]) if settings.get("shard") else None
    # A shard that the hash gives no file is an empty, finished part (so every shard of a cluster job can be
    # merged); only inputs that hold no file at all are refused.
    if next(walk_inputs(inputs, None), None) is None:
        raise UserError("no input files found")
    out.mkdir(parents=True, exist_ok=True)
    if check_out(out, resume, overwrite):
        done = _resume(out, settings, cell_header)
        walk = walk_inputs(inputs, shard)
        for k, row in enumerate(done):
            path = next(walk, (None, (None, None)))[1][0]
            if path is None or shown_path(path) != row[0]:
                raise UserError(f"the inputs changed since the interrupted run (row {k + 2} of "
                                f"{journal_path(out, IMAGES)} is {row[0]}, the inputs now give {path}); start again "
                                "with --overwrite")
        return len(done), walk
    (out / OVERLAYS).mkdir(exist_ok=True)
    atomic_write(out / SETTINGS, json.dumps(settings, indent=2) + "\n")  # first: a journal has its settings
    for name, header in ((CELLS, cell_header), (IMAGES, IMAGE_COLUMNS)):
        with journal_path(out, name).open("w", newline="") as handle:
            csv.writer(handle).writerow(header)
    return 0, walk_inputs(inputs, shard)
