"""Screening whole smear photographs: find every cell, classify each red cell, count per image and sample.

With ``cells="white"`` the white cells go to a leukemia model instead (cut as
its training cells were, ``cellscreen.screen.white``) and the blast share is
counted where the parasitemia would be.

``screen(model, inputs, out)`` is the one function the ``screen`` command
calls.  For each field image (PNG, JPEG, TIFF, BMP, any size) it finds the
red and white cells (``cellscreen.screen.detect``), cuts each red cell the
way the model's training cells were cut (``cut``), classifies the cuts with
any cellscreen model, and writes into ``out``:

- ``cells.csv``: one row per cell found (image, cell id, kind, centre, box,
  area, single, touches the border, counted, class, probabilities);
- ``images.csv``: one row per input file, the counts and parasitemia of a
  field, or the reason the file was skipped;
- ``samples.csv``: the same summed per sample (a folder, or ``group_regex``);
- ``overlays/``: one picture per field with each cell outlined;
- ``report.html``: a printable page for the whole run; ``screen.json``: the
  settings and totals.

Fields are read, searched and classified a few at a time by worker
processes (an ONNX model runs inside them), so memory stays flat however
many images there are.  Rows go to journals (``*.partial.csv``) flushed after
every field; an interrupted run goes on with ``resume=True`` after the last
finished field and ends with the same files an uninterrupted run writes.

``shard=(i, n)`` screens only the inputs whose path hashes to ``i`` modulo
``n`` (the rule ``predict --shard`` follows), so that ``n`` machines can share
a run; ``cellscreen.screen.shards.merge_screens`` joins their folders.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import dataclasses
import io
import json
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from cellscreen.data.images import ImageReadError, load_rgb
from cellscreen.data.parallel import default_workers
from cellscreen.errors import UserError
from cellscreen.files import atomic_write
from cellscreen.screen import count, cut, overlay, white
from cellscreen.screen.detect import find_cells
from cellscreen.screen.learned import learned_finder, shared_finder
from cellscreen.screen.report import write_report
from cellscreen.screen.run_folder import (CELLS, COUNT_COLUMNS, IMAGE_COLUMNS, IMAGES, OVERLAYS, RECORD, REPORT,
                                          SAMPLE_COLUMNS, SAMPLES, SETTINGS, check_inputs, journal_path, open_run,
                                          shown_path, walk_inputs)

# the file names and columns are named here too: a run folder is what this module writes
__all__ = ["screen", "screen_field", "cell_columns", "sample_rows", "finish_run", "CELLS", "IMAGES", "SAMPLES",
           "REPORT", "RECORD", "OVERLAYS", "IMAGE_COLUMNS", "SAMPLE_COLUMNS", "COUNT_COLUMNS"]

_CHUNK = 512  # red cells cut and classified at a time, so a crowded 16-megapixel field stays small
_CELL_BASE = ["image", "cell_id", "kind", "centre_x", "centre_y", "x0", "y0", "x1", "y1", "area", "single",
              "touches_border", "counted", "class"]


def cell_columns(classes: Sequence[str]) -> list[str]:
    """The columns of ``cells.csv`` for a model with these classes."""
    return [*_CELL_BASE, *[f"p_{c}" for c in classes]]


@dataclasses.dataclass(frozen=True)
class FieldOptions:
    """What every field is screened with (sent to the worker processes)."""

    out: str
    classes: tuple[str, ...]
    positive_class: str | None
    threshold: float
    input_size: int
    border_crop: int
    interpolation: str
    batch_size: int
    cell_diameter: float | None
    microns_per_pixel: float | None
    detector: str = "classical"  # or learned:RUN (cellscreen.screen.learned)
    cells: str = "red"  # the kind of cell the model classifies: red (malaria) or white (leukemia)
    blast_classes: tuple[str, ...] = ()  # with white cells: the model's classes that are blasts
    white_cut: white.WhiteCut | None = None  # with white cells: how the model's training cells were cut


def overlay_name(index: int, path: Path) -> str:
    """The overlay file of the ``index``-th input: numbered, as two folders may hold the same file name."""
    return f"{OVERLAYS}/{index:06d}_{path.stem[:80]}.png"


def classify_red_cells(rgb: np.ndarray, detection, scale: float, options: FieldOptions,
                       predictor) -> tuple[list, np.ndarray]:
    """A field's red cells and their class probabilities ``(N, classes)``, cut and classified ``_CHUNK``
    cells at a time."""
    red = [cell for cell in detection.cells if cell.kind == "red"]
    proba = np.zeros((len(red), len(options.classes)), np.float32)
    for start in range(0, len(red), _CHUNK):
        crops = cut.cut_cells(rgb, detection.labels, red[start:start + _CHUNK], scale)
        batch = cut.model_batch(crops, options.input_size, options.interpolation, options.border_crop)
        proba[start:start + len(crops)] = predictor.predict_batched(batch, options.batch_size)
    return red, proba


def classify_white_cells(rgb: np.ndarray, detection, red_diameter: float, options: FieldOptions,
                         predictor) -> tuple[list, np.ndarray]:
    """A field's white cells and their class probabilities ``(N, classes)``, each cut as the leukemia model's
    training cells were (``red_diameter``: the field's red cells' diameter, px)."""
    found = [cell for cell in detection.cells if cell.kind == "white"]
    proba = np.zeros((len(found), len(options.classes)), np.float32)
    for start in range(0, len(found), _CHUNK):
        crops = white.cut_white_cells(rgb, detection.labels, found[start:start + _CHUNK], options.white_cut,
                                      red_diameter)
        batch = cut.model_batch(crops, options.input_size, options.interpolation, options.border_crop)
        proba[start:start + len(crops)] = predictor.predict_batched(batch, options.batch_size)
    return found, proba


def _judged(rgb: np.ndarray, detection, scale: float, options: FieldOptions, predictor):
    """The cells the model judged (the red or the white ones), their probabilities, classes, whether each is
    positive (parasitized, or a blast) and its positive probability (None without a positive class)."""
    if options.cells == "white":
        # the red-cell diameter the field is scaled by: given (--cell-diameter, --microns-per-pixel) or measured
        found, proba = classify_white_cells(rgb, detection, cut.TRAINING_CELL_DIAMETER / scale, options, predictor)
        names, hits, p_positive = count.call_blasts(proba, options.classes, options.blast_classes,
                                                    options.threshold)
        return found, proba, names, hits, p_positive
    found, proba = classify_red_cells(rgb, detection, scale, options, predictor)
    names, hits = count.call_cells(proba, options.classes, options.positive_class, options.threshold)
    pos = options.classes.index(options.positive_class) if options.positive_class in options.classes else None
    return found, proba, names, hits, None if pos is None else proba[:, pos]


def _cell_row(shown: str, cell, called: str | None, proba: np.ndarray | None, classes: int,
              judged: str = "red") -> list:
    """One ``cells.csv`` row; a cell that was not classified (a white cell, or with ``judged="white"`` a red one)
    has no class or probabilities.  ``counted``: in the denominator of the share reported for the ``judged``
    cells."""
    counted = cell.kind == judged and (cell.single or judged == "white") and not cell.touches_border
    return [shown, cell.id, cell.kind, f"{cell.centre[0]:.1f}", f"{cell.centre[1]:.1f}", *cell.box, cell.area,
            int(cell.single), int(cell.touches_border), int(counted), called or "",
            *([""] * classes if proba is None else [f"{v:.4f}" for v in proba])]


def screen_field(path: Path, index: int, options: FieldOptions, predictor) -> tuple[list, list[list]]:
    """Screen one field: its ``images.csv`` row and its ``cells.csv`` rows; the overlay is written here."""
    shown = shown_path(path)
    try:
        rgb = load_rgb(path)
    except ImageReadError as exc:
        return _skipped_row(shown, str(exc)), []
    given = options.cell_diameter  # pixels, or None: measured in the field
    if options.microns_per_pixel is not None:
        given = cut.RED_CELL_MICRONS / options.microns_per_pixel
    try:
        finder = shared_finder(options.detector)
        detection = (finder.find_cells if finder else find_cells)(rgb, cell_diameter=given)
    except MemoryError:
        return _skipped_row(shown, f"not enough memory to search a {rgb.shape[1]}x{rgb.shape[0]} image"), []
    scale = cut.field_scale(detection.cell_diameter, cell_diameter=given)
    judged, proba, names, positive, p_positive = _judged(rgb, detection, scale, options, predictor)
    hits = [cell.id for cell, hit in zip(judged, positive) if hit]
    counts = (count.count_field(detection.cells, [], hits) if options.cells == "white"
              else count.count_field(detection.cells, hits))
    colours = overlay.colours_for(detection.cells, {} if p_positive is None else {
        cell.id: float(p) for cell, p in zip(judged, p_positive)}, judged=options.cells)
    name = overlay_name(index, path)
    atomic_write(Path(options.out) / name, overlay.overlay_png(overlay.draw_overlay(rgb, detection.labels, colours)))
    by_id = {cell.id: k for k, cell in enumerate(judged)}
    rows = [_cell_row(shown, cell, names[by_id[cell.id]], proba[by_id[cell.id]], len(options.classes), options.cells)
            if cell.id in by_id else _cell_row(shown, cell, None, None, len(options.classes), options.cells)
            for cell in detection.cells]
    height, width = rgb.shape[:2]
    image_row = [shown, "", "ok", width, height, f"{detection.cell_diameter:.2f}", f"{scale:.4f}", len(rows),
                 *_count_values(counts, count.field_warnings(counts), options.cells), name]
    return image_row, rows


def _skipped_row(shown: str, reason: str) -> list:
    return [shown, "", f"skipped: {reason}", *[""] * (len(IMAGE_COLUMNS) - 3)]


def _share(positive: int, counted: int) -> list[str]:
    found = count.parasitemia(positive, counted)
    return ["", "", ""] if found is None else [f"{found.percent:.3f}", f"{found.low:.3f}", f"{found.high:.3f}"]


def _count_values(counts: count.Counts, warnings: list[str], judged: str = "red") -> list:
    """The ``COUNT_COLUMNS`` values; the share of the cells not judged (parasitemia, or blasts) is left empty."""
    red = _share(counts.positive, counts.red_counted) if judged == "red" else ["", "", ""]
    blasts = [counts.blasts, *_share(counts.blasts, counts.white_counted)] if judged == "white" else ["", "", "", ""]
    return [counts.red_counted, counts.positive, counts.flagged, counts.white, counts.border, *red,
            counts.white_counted, *blasts, "; ".join(warnings)]


_worker_predictor = None  # a worker process's own copy of the ONNX model


def _start_worker(spec: tuple) -> None:
    global _worker_predictor
    from cellscreen.serve.runtime import OnnxPredictor  # only workers of an ONNX model load one

    _worker_predictor = OnnxPredictor(*spec, threads=1)


def _field_task(path: Path, index: int, options: FieldOptions) -> tuple[list, list[list]]:
    return screen_field(path, index, options, _worker_predictor)


def _fields(predictor, todo: Iterator[tuple[int, Path, str | None]], options: FieldOptions,
            workers: int) -> Iterator[tuple[list, list[list]]]:
    """The rows of each input in order; fields screened by ``workers`` processes when the model can run
    there (an ONNX model), else here."""
    spread = getattr(predictor, "screen_fields", None)  # an engine that screens fields elsewhere (ray_engine)
    if spread is not None:
        yield from spread(todo, options)
        return
    spec = getattr(predictor, "worker_spec", None)
    pool = ProcessPoolExecutor(workers, initializer=_start_worker, initargs=(spec(),)) if (
        workers > 0 and spec is not None) else None
    pending: collections.deque = collections.deque()
    try:
        for index, path, reason in todo:
            if reason is not None:
                pending.append((_skipped_row(shown_path(path), reason), []))
            elif pool is None:
                pending.append(screen_field(path, index, options, predictor))
            else:
                pending.append(pool.submit(_field_task, path, index, options))
            while pending and (len(pending) > 2 * workers or not hasattr(pending[0], "result")):
                first = pending.popleft()
                yield first.result() if hasattr(first, "result") else first
        while pending:
            first = pending.popleft()
            yield first.result() if hasattr(first, "result") else first
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _validation(predictor) -> dict:
    """What the model's description says about its validation, for the record and the report."""
    description = predictor.description
    source, train = description.get("source") or description, description.get("train") or {}
    cells = {key.replace("_", " "): train[key] for key in ("images", "val_images") if key in train}
    return {"metric": source.get("metric"), "split": source.get("split"), "cells": cells}


def screen(model, inputs: Sequence[str | Path], out: str | Path, *, cell_diameter: float | None = None,
           microns_per_pixel: float | None = None, group_regex: str | None = None, resume: bool = False,
           overwrite: bool = False, workers: int | None = None, progress: bool = True, engine: str = "auto",
           batch_size: int = 256, shard: tuple[int, int] | None = None, detector: str = "classical",
           cells: str = "red", blast_classes: Sequence[str] | None = None) -> dict[str, int]:
    """Screen every field image in ``inputs`` (files and folders) with ``model`` and write the results into
    the folder ``out``; return the totals.

    ``model`` is anything ``load_predictor`` takes (a run folder, a checkpoint, ``"malaria"``, an ``.onnx``
    file) or a loaded ``Predictor``.  ``cell_diameter`` (pixels) or ``microns_per_pixel`` fix the red cells'
    size instead of measuring it in each field.  ``group_regex`` picks the sample from each file name (its
    first group); without it a sample is a folder.  ``workers`` processes screen fields side by side
    (default: one per core; 0: all here); a model run in PyTorch (an ensemble, an SVM) screens here.
    ``shard=(i, n)`` screens only that shard of the inputs.  ``detector`` finds the cells: ``classical`` or
    ``learned:RUN`` (a run folder of ``cellscreen cells train``).  An input named in ``inputs`` that is missing or
    not an image file is refused (a ``UserError``); files found in folders each get a row.

    ``cells="white"`` classifies the white cells with a leukemia model instead and counts blasts: the model's
    ``blast_classes`` (default: its positive class, else its training set's malignant classes).  A model
    trained on the other kind of cell, as far as its dataset tells, is refused.
    """
    from cellscreen.serve.runtime import Predictor, load_predictor  # loading a model is the slow part

    out = Path(out)
    pattern = count.check_group_regex(group_regex)
    check_inputs([str(item) for item in inputs])
    learned_finder(detector)  # an unknown detector or a broken run folder is refused before anything is written
    cut.field_scale(None, cell_diameter=cell_diameter, microns_per_pixel=microns_per_pixel)  # checks them
    predictor = model if isinstance(model, Predictor) else load_predictor(model, engine=engine)
    if predictor.positive_class is not None and predictor.positive_class not in predictor.classes:
        raise UserError(f"the model's positive class {predictor.positive_class!r} is not one of its classes")
    white_cut = white.check_model_cells(predictor.description.get("dataset"), cells, str(predictor.source))
    if white_cut is not None:
        blast_classes = white.blast_classes_for(predictor.classes, predictor.positive_class, white_cut, blast_classes)
    elif blast_classes:
        raise UserError("--blast-classes goes with --cells white")
    threshold = count.decision_threshold(predictor.description)
    if white_cut is not None and tuple(blast_classes) != (predictor.positive_class,):
        threshold = count.DEFAULT_THRESHOLD  # the model's threshold is its positive class's, not these classes'
    inputs = [str(item) for item in inputs]
    description = predictor.description
    settings = {"model": str(predictor.source), "model_name": description.get("model"),
                "dataset": description.get("dataset"), "classes": list(predictor.classes),
                "positive_class": predictor.positive_class, "threshold": threshold,
                "engine": predictor.engine, "interpolation": predictor.interpolation, "inputs": inputs,
                "cell_diameter": cell_diameter, "microns_per_pixel": microns_per_pixel, "group_regex": group_regex,
                "shard": list(shard) if shard else None, "detector": detector,
                "training_cell_diameter": cut.TRAINING_CELL_DIAMETER, "validation": _validation(predictor),
                "cells": cells, "blast_classes": list(blast_classes) if white_cut else None,
                "white_cut": white_cut and {k: v for k, v in dataclasses.asdict(white_cut).items()
                                            if k != "blast_classes"},
                "started": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    cell_header = cell_columns(predictor.classes)
    done, walk = open_run(out, settings, cell_header, resume, overwrite)
    total = sum(1 for _ in walk_inputs(inputs, shard)) if progress else None
    options = FieldOptions(str(out), tuple(predictor.classes), predictor.positive_class, settings["threshold"],
                           predictor.input_size, predictor.border_crop, predictor.interpolation, batch_size,
                           cell_diameter, microns_per_pixel, detector, cells, tuple(blast_classes or ()),
                           white_cut)
    workers = default_workers() if workers is None else workers
    todo = ((index, path, reason) for index, (path, reason) in walk)
    bar = tqdm(total=total, initial=done, desc="screening", unit="img", disable=not progress, leave=False)
    try:
        with journal_path(out, CELLS).open("a", newline="") as cells, journal_path(out, IMAGES).open("a", newline="") as images:
            fields = _fields(predictor, todo, options, workers)
            with contextlib.closing(fields):  # on an interruption, stop the workers now
                for image_row, cell_rows in fields:
                    image_row[1] = count.sample_of(image_row[0], pattern)
                    csv.writer(cells).writerows(cell_rows)
                    cells.flush()
                    os.fsync(cells.fileno())  # a field's cells are on disk before the row that says it is done
                    csv.writer(images).writerow(image_row)
                    images.flush()
                    os.fsync(images.fileno())
                    bar.update(1)
    finally:
        bar.close()
    return finish_run(out, settings, resumed=done)


def _image_counts(row: dict) -> count.Counts:
    numbers = {key: int(row.get(key) or 0) for key in ("red_counted", "positive", "flagged", "white", "border",
                                                       "white_counted", "blasts")}
    return count.Counts(**numbers)


def _read(path: Path) -> Iterator[dict]:
    with path.open(newline="") as handle:
        yield from csv.DictReader(handle)


def sample_rows(image_rows: Iterator[dict], judged: str = "red") -> list[list]:
    """``samples.csv`` rows, by sample name: each sample's fields summed, its skipped files counted
    (``judged``: the kind of cell the model classified)."""
    totals: dict[str, list] = {}
    for row in image_rows:
        entry = totals.setdefault(row["sample"], [count.Counts(images=0), 0])
        if row["status"] == "ok":
            entry[0] += _image_counts(row)
        else:
            entry[1] += 1
    return [[sample, counts.images, skipped,
             *_count_values(counts, count.sample_warnings(counts, skipped, judged), judged)]
            for sample, (counts, skipped) in sorted(totals.items())]


def finish_run(out: Path, settings: dict, resumed: int) -> dict[str, int]:
    """Sum the samples, write the report and the record, and give the journals their final names (the end of a
    run, or of a merge of shards)."""
    images_journal = journal_path(out, IMAGES)
    judged = settings.get("cells") or "red"
    samples = sample_rows(_read(images_journal), judged)
    text = io.StringIO()  # small: one row per sample
    csv.writer(text).writerows([SAMPLE_COLUMNS, *samples])
    atomic_write(out / SAMPLES, text.getvalue())
    totals = {"images": 0, "skipped": 0, "resumed": resumed, "samples": len(samples), "red_counted": 0,
              "positive": 0, "flagged": 0, "white": 0, "white_counted": 0, "blasts": 0}
    for row in _read(images_journal):
        ok = row["status"] == "ok"
        totals["images" if ok else "skipped"] += 1
        for key in ("red_counted", "positive", "flagged", "white", "white_counted", "blasts"):
            totals[key] += int(row.get(key) or 0) if ok else 0
    record = {**settings, **{k: v for k, v in totals.items() if k != "resumed"}}
    sample_dicts = [dict(zip(SAMPLE_COLUMNS, map(str, row))) for row in samples]
    write_report(out / REPORT, out, record, sample_dicts, lambda: _read(images_journal))
    os.replace(journal_path(out, CELLS), out / CELLS)
    os.replace(images_journal, out / IMAGES)
    atomic_write(out / RECORD, json.dumps(record, indent=2) + "\n")
    (out / SETTINGS).unlink(missing_ok=True)
    return totals
