"""Predict the class of every image in files and folders of any size, into a CSV or Parquet file.

Every input file gives exactly one row: its predicted class and the
probability of each class, or, for a file that cannot be used, an empty
prediction and the reason.

Folders are walked lazily in a fixed (sorted) order and decoded a bounded
number of files at a time by worker processes while the model runs, so
memory stays flat whatever the folder size.  Rows go to a journal,
``OUT.partial.csv``, flushed after every batch; when the run finishes the
journal becomes ``OUT`` (renamed for CSV, converted in batches for Parquet)
and ``OUT.json`` records the model, inputs, shard and counts.  Which files are
inputs and how they are decoded is ``inputs``; the rows, journal and output
files are ``outputs``; ``engine="ray"`` hands the work to ``distributed``.

An interrupted run continues with ``resume=True``, whenever it was stopped
(killed, out of disk space): the journal's complete rows are checked against
the same walk of the inputs and the run goes on after them, so no file is
predicted twice or left out.  The decoding workers end with the run, even one
killed with ``kill -9``.  ``shard=(i, n)``
keeps the files whose path hashes to ``i`` modulo ``n``; ``merge_predictions``
joins the ``n`` outputs into one file with exactly one row per input.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import ctypes
import json
import os
import signal
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from cellscreen.data.parallel import default_workers
from cellscreen.errors import UserError
from cellscreen.files import atomic_write
from cellscreen.serve.distributed import RayEngine
from cellscreen.serve.inputs import list_inputs, prepare_files, prepare_image, refuse_missing
from cellscreen.serve.outputs import (FORMATS, Journal, check_out_folder, check_prefix, count_rows, finish, header,
                                     journal_rows, output_errors, read_rows, row)
from cellscreen.serve.runtime import OnnxPredictor, Predictor, load_predictor

# list_inputs and prepare_image are named here too: explain and screen list and decode files as predict does
__all__ = ["list_inputs", "prepare_image", "predict_files", "merge_predictions", "parse_shard", "FORMATS"]

_TASK = 64  # files per decoding task
_CHUNK = 1024  # most files per journal flush (and per model call in this process)

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_worker_predictor = None  # a worker process's own copy of the ONNX model (see _predict_stream)


def _start_worker(spec: tuple, parent: int) -> None:
    global _worker_predictor
    _die_with(parent)
    _worker_predictor = OnnxPredictor(*spec, threads=1)


def _die_with(parent: int) -> None:
    """Make this worker process end when ``parent``, the predict process, ends, however it ends.

    A pool's workers outlive a parent killed with ``kill -9``: nothing tells them.  On Linux the kernel
    does (``prctl(PR_SET_PDEATHSIG, SIGKILL)``); elsewhere, and should the parent die before that call,
    a thread checks twice a second that the worker still has the parent it started with.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    threading.Thread(target=_watch_parent, args=(parent, os.getppid()), name="parent-watchdog",
                     daemon=True).start()


def _watch_parent(parent: int, first_parent: int) -> None:
    # first_parent is parent itself when workers are forked or spawned, a fork server otherwise
    while os.getppid() == first_parent and _alive(parent):
        time.sleep(0.5)
    os._exit(1)


def _alive(pid: int) -> bool:
    if os.name != "posix":  # Windows has no signal 0: os.kill would end the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _predict_task(paths: list[Path], size: int, crop: int, interpolation: str, batch_size: int,
                  tta: bool) -> tuple[np.ndarray, list[str | None]]:
    """Decode a few files and run the worker's model on them: their probabilities (readable ones) and a
    reason per file (None: ok)."""
    pixels, reasons = prepare_files(paths, size, crop, interpolation)
    return _worker_predictor.predict_batched(pixels, batch_size, tta=tta), reasons


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/N"`` (0 <= i < N) -> ``(i, N)``."""
    if text is None:
        return None
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise UserError(f"--shard takes i/N, e.g. 0/4 (got {text!r})") from None
    if count < 1 or not 0 <= index < count:
        raise UserError(f"--shard {text}: need 0 <= i < N")
    return index, count


def _in_shard(path: Path, shard: tuple[int, int] | None) -> bool:
    # A hash of the path, not its position, so every machine agrees whatever order its file system lists.
    return shard is None or zlib.crc32(str(path).encode("utf-8", "surrogateescape")) % shard[1] == shard[0]


def _selected(inputs: list[str], shard) -> Iterator[tuple[Path, str | None]]:
    return ((path, reason) for path, reason in list_inputs(inputs) if _in_shard(path, shard))


def predict_files(model, inputs: list[str | Path], out: str | Path, *, batch_size: int = 256, tta: bool = False,
                  overwrite: bool = False, resume: bool = False, shard: tuple[int, int] | None = None,
                  engine: str = "auto", workers: int | None = None, progress: bool = True,
                  ray_address: str | None = None, precision: str = "32") -> dict[str, int]:
    """Write one row per input file into ``out`` (``.csv`` or ``.parquet``); return the counts.

    ``model`` is anything ``load_predictor`` takes, or a loaded ``Predictor``.  ``engine="ray"`` computes the
    same rows on a Ray cluster (``cellscreen.serve.distributed``): the one at ``ray_address`` or
    ``$RAY_ADDRESS``, else a local instance of ``workers`` CPUs; ``workers`` is then the number of actors.
    ``precision``: what a model run in PyTorch computes in (``load_predictor``).  An input that does not
    exist is refused before anything is written; a file that exists but cannot be used gets a row with the
    reason.  A failed write (full disk, read-only folder) is a ``UserError`` that keeps the journal.
    """
    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        raise UserError(f"--out must end in {' or '.join(FORMATS)} (got {out.name})")
    journal, record = out.with_name(out.name + ".partial.csv"), out.with_name(out.name + ".json")
    if out.exists() and not overwrite:
        raise UserError(f"{out} already exists; pass --overwrite to replace it")
    if journal.exists() and not (resume or overwrite):
        raise UserError(f"{journal} holds an interrupted run; pass --resume to continue it or --overwrite to "
                        "start again")
    if ray_address and engine != "ray":
        raise UserError("--ray-address goes with --engine ray")
    if engine == "ray" and precision != "32":
        raise UserError(f"--precision {precision} is for models run in PyTorch; --engine ray runs the ONNX graph")
    inputs = [str(item) for item in inputs]
    refuse_missing(inputs)
    check_out_folder(out)
    if engine == "ray":
        predictor = RayEngine(model, address=ray_address)
    else:
        predictor = (model if isinstance(model, Predictor)
                     else load_predictor(model, engine=engine, precision=precision))
    classes, size, crop = predictor.classes, predictor.input_size, predictor.border_crop
    columns = header(classes)
    settings = {"model": predictor.source, "model_name": predictor.description.get("model"),
                "engine": predictor.engine, "precision": getattr(predictor, "precision", None), "classes": classes,
                "interpolation": predictor.interpolation, "tta": tta, "inputs": inputs,
                "shard": list(shard) if shard else None}
    settings_file = journal.with_name(journal.name + ".json")
    done = 0
    if resume and journal.exists():
        before = json.loads(settings_file.read_text()) if settings_file.exists() else None
        # a journal begun by a version that did not record the resize is compared on the rest
        same = ("classes", "interpolation", "precision", "tta", "inputs", "shard")
        if before is not None and {k: before.get(k, settings[k]) for k in same} != {k: settings[k] for k in same}:
            raise UserError(f"{journal} was started with other inputs or settings ({settings_file}); "
                            "start again with --overwrite")
        with output_errors(journal):
            done = journal_rows(journal, columns)
    selected = _selected(inputs, shard)
    total = sum(1 for _ in _selected(inputs, shard)) if progress else None
    if total == 0 or (total is None and next(_selected(inputs, shard), None) is None):
        raise UserError("no input files found" + (f" in shard {shard[0]}/{shard[1]}" if shard else ""))
    if done:
        check_prefix(journal, selected, done)
    else:
        with output_errors(out.parent, journal):
            out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(settings_file, json.dumps(settings, indent=2) + "\n")
    counts = {"predicted": 0, "skipped": 0, "resumed": done}
    bar = tqdm(total=total, initial=done, desc="predicting", unit="img", disable=not progress, leave=False)
    try:
        with Journal(journal, columns, append=bool(done)) as rows_written:
            stream = (predictor.stream(selected, batch_size=batch_size, tta=tta, workers=workers) if engine == "ray"
                      else _predict_stream(predictor, selected, size, crop, batch_size, tta, workers))
            with contextlib.closing(stream):  # on an interruption, stop its workers now
                for rows in stream:
                    for written in rows:
                        counts["skipped" if written[-1] != "ok" else "predicted"] += 1
                    rows_written.write(rows)
                    bar.update(len(rows))
    finally:
        bar.close()
    _finish(journal, out, record, settings, classes)
    return counts


def _finish(journal: Path, out: Path, record: Path, settings: dict, classes: list[str]) -> None:
    """Record the run, then turn its journal into ``out``: a kill before the journal is gone can resume."""
    with output_errors(out, journal):
        totals = count_rows(journal)
        atomic_write(record, json.dumps({**settings, "rows": totals["rows"], "predicted": totals["ok"],
                                         "skipped": totals["rows"] - totals["ok"], "output": out.name},
                                        indent=2) + "\n")
        finish(journal, out, classes)
        journal.with_name(journal.name + ".json").unlink(missing_ok=True)


def _predict_stream(predictor, selected, size: int, crop: int, batch_size: int, tta: bool,
                    workers: int | None) -> Iterator[list[list[str]]]:
    """Rows in input order, a batch at a time (at least a decoding task, at most ``_CHUNK``), so that the
    journal has them soon after they are predicted.

    An ONNX model runs inside the worker processes, one thread each, right after they decode: every core
    then does both, and nothing waits for one process to run the model on everyone's images.  A PyTorch
    model runs here, while the workers decode ahead.
    """
    workers = default_workers() if workers is None else workers
    spec = getattr(predictor, "worker_spec", None)
    in_workers = workers > 0 and spec is not None
    here = os.getpid()
    pool = (ProcessPoolExecutor(max_workers=workers, initializer=_start_worker, initargs=(spec(), here))
            if in_workers else ProcessPoolExecutor(max_workers=workers, initializer=_die_with, initargs=(here,))
            if workers > 0 else None)
    pending: collections.deque[tuple[list[tuple[Path, str | None]], Future | tuple]] = collections.deque()
    prepare = (size, crop, predictor.interpolation)

    def submit(items):
        paths = [path for path, reason in items if reason is None]
        if in_workers:
            job = pool.submit(_predict_task, paths, *prepare, batch_size, tta)
        else:
            job = pool.submit(prepare_files, paths, *prepare) if pool else prepare_files(paths, *prepare)
        pending.append((items, job))

    def tasks():
        items = []
        for item in selected:
            items.append(item)
            if len(items) == _TASK:
                yield items
                items = []
        if items:
            yield items

    # Keep two chunks decoding ahead: while the model runs on one chunk, the workers fill the next, so
    # neither waits for the other.  (With less, the workers ran dry during every model call.)
    ahead = max(2, 4 * workers, 2 * _CHUNK // _TASK)
    try:
        source = tasks()
        for items in source:
            submit(items)
            if len(pending) >= ahead:
                break
        chunk: list[tuple[list, np.ndarray, list]] = []
        while pending:
            items, job = pending.popleft()
            pixels, reasons = job.result() if pool else job
            chunk.append((items, pixels, reasons))
            nxt = next(source, None)
            if nxt is not None:
                submit(nxt)
            if sum(len(c[0]) for c in chunk) >= min(_CHUNK, batch_size) or not pending:
                yield _rows(predictor, chunk, batch_size, tta, predicted=in_workers)
                chunk = []
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _rows(predictor, chunk, batch_size: int, tta: bool, predicted: bool = False) -> list[list[str]]:
    """The rows of a chunk of tasks, each ``(items, pixels or probabilities if predicted, reasons)``."""
    stacked = [values for _, values, _ in chunk if len(values)]
    if predicted:
        proba = np.concatenate(stacked) if stacked else None
    else:
        images = np.concatenate(stacked) if stacked else np.zeros((0, 1, 1, 3), np.uint8)
        proba = predictor.predict_batched(images, batch_size, tta=tta)
    rows, k = [], 0
    for items, _, reasons in chunk:
        decoded = iter(reasons)
        for path, reason in items:
            reason = reason or next(decoded)
            if reason is not None:
                rows.append(row(path, predictor.classes, reason=reason))
            else:
                rows.append(row(path, predictor.classes, proba=proba[k], positive_class=predictor.positive_class,
                                threshold=predictor.decision_threshold))
                k += 1
    return rows


def merge_predictions(parts: list[str | Path], out: str | Path, *, overwrite: bool = False) -> dict[str, int]:
    """Join the outputs of ``--shard 0/N`` ... ``--shard N-1/N`` into ``out``, one row per input.

    Refuses parts of different models, inputs or shard counts, a missing or
    repeated shard, an unfinished part, and any path that appears twice.
    """
    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        raise UserError(f"--out must end in {' or '.join(FORMATS)} (got {out.name})")
    if out.exists() and not overwrite:
        raise UserError(f"{out} already exists; pass --overwrite to replace it")
    records = []
    for part in map(Path, parts):
        record = part.with_name(part.name + ".json")
        if not part.is_file() or not record.is_file():
            unfinished = part.with_name(part.name + ".partial.csv").exists()
            raise UserError(f"{part} is not a finished prediction output"
                            + (" (it was interrupted: rerun its command with --resume)" if unfinished else ""))
        records.append((part, json.loads(record.read_text())))
    first = records[0][1]
    if first.get("shard") is None:
        raise UserError(f"{records[0][0]} was not made with --shard; there is nothing to merge")
    count = first["shard"][1]
    for part, record in records:
        for key in ("model_name", "classes", "inputs", "tta"):
            if record.get(key) != first.get(key):
                raise UserError(f"{part} differs from {records[0][0]} in {key}; shards must come from one command")
        if record.get("shard") is None or record["shard"][1] != count:
            raise UserError(f"{part} is not one of {count} shards")
    seen = sorted(record["shard"][0] for _, record in records)
    if seen != list(range(count)):
        missing = sorted(set(range(count)) - set(seen))
        repeated = sorted({s for s in seen if seen.count(s) > 1})
        raise UserError(f"need each of the {count} shards once: missing {missing or 'none'}, "
                        f"repeated {repeated or 'none'}")
    classes = first["classes"]
    tmp = out.with_name(out.name + ".partial.csv")
    paths: set[str] = set()
    check_out_folder(out)
    try:
        with output_errors(tmp), tmp.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header(classes))
            for part, _ in sorted(records, key=lambda r: r[1]["shard"][0]):
                rows = read_rows(part)
                if next(rows) != header(classes):
                    raise UserError(f"{part} has unexpected columns")
                for written in rows:
                    if written[0] in paths:
                        raise UserError(f"{written[0]} appears twice (again in {part}); were the shards given "
                                        "the same inputs?")
                    paths.add(written[0])
                    writer.writerow(written)
        with output_errors(out):
            finish(tmp, out, classes)
    finally:
        tmp.unlink(missing_ok=True)  # a refused or failed merge leaves nothing that passes for an interrupted run
    counts = count_rows(out)
    record = {**first, "shard": None, "merged_from": [str(p) for p, _ in records], "rows": counts["rows"],
              "predicted": counts["ok"], "skipped": counts["rows"] - counts["ok"], "output": out.name}
    with output_errors(out):
        atomic_write(out.with_name(out.name + ".json"), json.dumps(record, indent=2) + "\n")
    return {"rows": counts["rows"], "predicted": counts["ok"], "skipped": counts["rows"] - counts["ok"]}
