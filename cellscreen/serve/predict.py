"""Predict the class of every image in files and folders of any size, into a CSV or Parquet file.

Every input file gives exactly one row: its predicted class and the
probability of each class, or, for a file that cannot be used, an empty
prediction and the reason.

Folders are walked lazily in a fixed (sorted) order and decoded a bounded
number of files at a time by worker processes while the model runs, so
memory stays flat whatever the folder size.  Rows go to a journal,
``OUT.partial.csv``, flushed after every chunk; when the run finishes the
journal becomes ``OUT`` (renamed for CSV, converted in batches for Parquet)
and ``OUT.json`` records the model, inputs, shard and counts.

An interrupted run continues with ``resume=True``: the journal's complete
rows are checked against the same walk of the inputs and the run goes on
after them, so no file is predicted twice or left out.  ``shard=(i, n)``
keeps the files whose path hashes to ``i`` modulo ``n``; ``merge_predictions``
joins the ``n`` outputs into one file with exactly one row per input.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import json
import os
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from cellscreen.data.images import IGNORED_NAMES, IMAGE_SUFFIXES, ImageReadError, load_prepared
from cellscreen.data.index import printable_path, valid_utf8_name, walk_tree
from cellscreen.data.parallel import default_workers
from cellscreen.errors import UserError

__all__ = ["list_inputs", "prepare_image", "predict_files", "merge_predictions", "parse_shard", "FORMATS"]

FORMATS = (".csv", ".parquet")
_TASK = 64  # files per decoding task
_CHUNK = 1024  # files per journal flush


def list_inputs(inputs: Iterable[str | Path]) -> Iterator[tuple[Path, str | None]]:
    """``(file, None)`` for each candidate image, ``(file, reason)`` for files that are not; lazily, sorted.

    Folders are walked as datasets are: symlinked folders are listed, not
    followed; files in hidden folders and folders that cannot be listed are
    listed with the reason.
    """
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for found, reason in walk_tree(path):
                yield (found, reason) if reason else _classify(found)
        elif path.exists() or path.is_symlink():
            yield _classify(path)
        else:
            yield path, "no such file or folder"


def _classify(path: Path) -> tuple[Path, str | None]:
    if path.name.startswith(".") or path.name.lower() in IGNORED_NAMES:
        return path, "hidden or system file"
    if not valid_utf8_name(str(path)):
        return path, "file name is not valid UTF-8 (rename the file)"
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return path, f"not an image file type ({path.suffix or 'no extension'})"
    return path, None


def _shown(path: Path) -> str:
    """The path as written in the results (undecodable bytes as ``\\xe9``)."""
    return printable_path(str(path))


def prepare_image(path: Path, size: int, crop: int, interpolation: str) -> np.ndarray | str:
    """The model-ready pixels of one file, or the reason it cannot be used."""
    try:
        return load_prepared(path, size=size, crop=crop, interpolation=interpolation)
    except ImageReadError as exc:
        return str(exc)


def _prepare_task(paths: list[Path], size: int, crop: int,
                  interpolation: str) -> tuple[np.ndarray, list[str | None]]:
    """Decode a few files in a worker: their stacked pixels (readable ones) and a reason per file (None: ok)."""
    pixels, reasons = [], []
    for path in paths:
        prepared = prepare_image(path, size, crop, interpolation)
        if isinstance(prepared, str):
            reasons.append(prepared)
        else:
            pixels.append(prepared)
            reasons.append(None)
    stacked = np.stack(pixels) if pixels else np.zeros((0, size, size, 3), np.uint8)
    return stacked, reasons


_worker_predictor = None  # a worker process's own copy of the ONNX model (see _predict_stream)


def _start_worker(spec: tuple) -> None:
    global _worker_predictor
    from cellscreen.serve.runtime import OnnxPredictor

    _worker_predictor = OnnxPredictor(*spec, threads=1)


def _predict_task(paths: list[Path], size: int, crop: int, interpolation: str, batch_size: int,
                  tta: bool) -> tuple[np.ndarray, list[str | None]]:
    """Decode a few files and run the worker's model on them: their probabilities (readable ones) and a
    reason per file (None: ok)."""
    pixels, reasons = _prepare_task(paths, size, crop, interpolation)
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


def _header(classes: list[str]) -> list[str]:
    return ["path", "predicted", *[f"p_{c}" for c in classes], "status"]


def _journal_rows(journal: Path, header: list[str]) -> int:
    """Complete rows already in an interrupted run's journal (a torn last line is cut off)."""
    with journal.open("rb+") as handle:
        data = handle.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            handle.truncate(end)
    with journal.open(newline="") as handle:
        reader = csv.reader(handle)
        if next(reader, None) != header:
            raise UserError(f"{journal} was written for another model or classes; start again with --overwrite")
        return sum(1 for _ in reader)


def _check_prefix(journal: Path, selected: Iterator[tuple[Path, str | None]], rows: int) -> None:
    """The journal's rows must be the first ``rows`` files of this walk; consumes them from ``selected``."""
    with journal.open(newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        for k, row in enumerate(reader):
            path, _ = next(selected, (None, None))
            if path is None or _shown(path) != row[0]:
                raise UserError(f"the inputs changed since the interrupted run (row {k + 2} of {journal} is "
                                f"{row[0]}, the walk now gives {path}); start again with --overwrite")


def predict_files(model, inputs: list[str | Path], out: str | Path, *, batch_size: int = 256, tta: bool = False,
                  overwrite: bool = False, resume: bool = False, shard: tuple[int, int] | None = None,
                  engine: str = "auto", workers: int | None = None, progress: bool = True,
                  ray_address: str | None = None, precision: str = "32") -> dict[str, int]:
    """Write one row per input file into ``out`` (``.csv`` or ``.parquet``); return the counts.

    ``model`` is anything ``load_predictor`` takes, or a loaded ``Predictor``.  ``engine="ray"`` computes the
    same rows on a Ray cluster (``cellscreen.serve.distributed``): the one at ``ray_address`` or
    ``$RAY_ADDRESS``, else a local instance of ``workers`` CPUs; ``workers`` is then the number of actors.
    ``precision``: what a model run in PyTorch computes in (``load_predictor``).
    """
    from cellscreen.serve.runtime import Predictor, load_predictor

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
    if engine == "ray":
        from cellscreen.serve.distributed import RayEngine

        predictor = RayEngine(model, address=ray_address)
    else:
        predictor = (model if isinstance(model, Predictor)
                     else load_predictor(model, engine=engine, precision=precision))
    classes, size, crop = predictor.classes, predictor.input_size, predictor.border_crop
    header = _header(classes)
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
        done = _journal_rows(journal, header)
    selected = _selected(inputs, shard)
    total = sum(1 for _ in _selected(inputs, shard)) if progress else None
    if total == 0 or (total is None and next(_selected(inputs, shard), None) is None):
        raise UserError("no input files found" + (f" in shard {shard[0]}/{shard[1]}" if shard else ""))
    out.parent.mkdir(parents=True, exist_ok=True)
    if done:
        _check_prefix(journal, selected, done)
        handle = journal.open("a", newline="")
    else:
        handle = journal.open("w", newline="")
        csv.writer(handle).writerow(header)
        settings_file.write_text(json.dumps(settings, indent=2) + "\n")
    counts = {"predicted": 0, "skipped": 0, "resumed": done}
    bar = tqdm(total=total, initial=done, desc="predicting", unit="img", disable=not progress, leave=False)
    try:
        with handle:
            writer = csv.writer(handle)
            stream = (predictor.stream(selected, batch_size=batch_size, tta=tta, workers=workers)
                      if engine == "ray" else _predict_stream(predictor, selected, size, crop, batch_size, tta, workers))
            with contextlib.closing(stream):  # on an interruption, stop its workers now
                for rows in stream:
                    for row in rows:
                        counts["skipped" if row[-1] != "ok" else "predicted"] += 1
                    writer.writerows(rows)
                    handle.flush()
                    os.fsync(handle.fileno())
                    bar.update(len(rows))
    finally:
        bar.close()
    _finish(journal, out, classes)
    settings_file.unlink(missing_ok=True)
    totals = _count_rows(out)
    record.write_text(json.dumps({**settings, "rows": totals["rows"], "predicted": totals["ok"],
                                  "skipped": totals["rows"] - totals["ok"], "output": out.name}, indent=2) + "\n")
    return counts


def _predict_stream(predictor, selected, size: int, crop: int, batch_size: int, tta: bool,
                    workers: int | None) -> Iterator[list[list[str]]]:
    """Rows in input order, about ``_CHUNK`` at a time.

    An ONNX model runs inside the worker processes, one thread each, right after they decode: every core
    then does both, and nothing waits for one process to run the model on everyone's images.  A PyTorch
    model runs here, while the workers decode ahead.
    """
    workers = default_workers() if workers is None else workers
    spec = getattr(predictor, "worker_spec", None)
    in_workers = workers > 0 and spec is not None
    pool = (ProcessPoolExecutor(max_workers=workers, initializer=_start_worker, initargs=(spec(),)) if in_workers
            else ProcessPoolExecutor(max_workers=workers) if workers > 0 else None)
    pending: collections.deque[tuple[list[tuple[Path, str | None]], Future | tuple]] = collections.deque()
    prepare = (size, crop, predictor.interpolation)

    def submit(items):
        paths = [path for path, reason in items if reason is None]
        if in_workers:
            job = pool.submit(_predict_task, paths, *prepare, batch_size, tta)
        else:
            job = pool.submit(_prepare_task, paths, *prepare) if pool else _prepare_task(paths, *prepare)
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
            if sum(len(c[0]) for c in chunk) >= _CHUNK or not pending:
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
                rows.append(_row(path, predictor.classes, reason=reason))
            else:
                rows.append(_row(path, predictor.classes, proba=proba[k]))
                k += 1
    return rows


def _row(path: Path, classes: list[str], *, proba: np.ndarray | None = None, reason: str | None = None) -> list[str]:
    """One output row: the predicted class and probabilities, or the reason the file was skipped."""
    if reason is not None:
        return [_shown(path), "", *[""] * len(classes), f"skipped: {reason}"]
    return [_shown(path), classes[int(proba.argmax())], *[f"{v:.6f}" for v in proba], "ok"]


def _finish(journal: Path, out: Path, classes: list[str]) -> None:
    """Turn a complete journal into the output file."""
    if out.suffix.lower() == ".csv":
        os.replace(journal, out)
        return
    _csv_to_parquet(journal, out, classes)
    journal.unlink()


def _csv_to_parquet(source: Path, out: Path, classes: list[str]) -> None:
    try:
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
    tmp = out.with_name(out.name + ".tmp")
    with pq.ParquetWriter(tmp, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)
    os.replace(tmp, out)


def _read_rows(path: Path) -> Iterator[list[str]]:
    """Rows of a prediction file (CSV or Parquet), header first."""
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        table = pq.ParquetFile(path)
        yield list(table.schema_arrow.names)
        for batch in table.iter_batches():
            for row in zip(*[column.to_pylist() for column in batch.columns]):
                yield ["" if v is None else (f"{v:.6f}" if isinstance(v, float) else str(v)) for v in row]
        return
    with path.open(newline="") as handle:
        yield from csv.reader(handle)


def _count_rows(path: Path) -> dict[str, int]:
    rows = _read_rows(path)
    next(rows)
    counts = {"rows": 0, "ok": 0}
    for row in rows:
        counts["rows"] += 1
        counts["ok"] += row[-1] == "ok"
    return counts


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
    with tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(_header(classes))
        for part, _ in sorted(records, key=lambda r: r[1]["shard"][0]):
            rows = _read_rows(part)
            if next(rows) != _header(classes):
                raise UserError(f"{part} has unexpected columns")
            for row in rows:
                if row[0] in paths:
                    tmp.unlink()
                    raise UserError(f"{row[0]} appears twice (again in {part}); were the shards given the same "
                                    "inputs?")
                paths.add(row[0])
                writer.writerow(row)
    _finish(tmp, out, classes)
    counts = _count_rows(out)
    record = {**first, "shard": None, "merged_from": [str(p) for p, _ in records], "rows": counts["rows"],
              "predicted": counts["ok"], "skipped": counts["rows"] - counts["ok"], "output": out.name}
    out.with_name(out.name + ".json").write_text(json.dumps(record, indent=2) + "\n")
    return {"rows": counts["rows"], "predicted": counts["ok"], "skipped": counts["rows"] - counts["ok"]}
