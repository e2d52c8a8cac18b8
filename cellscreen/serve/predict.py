"""Predict the class of every image in files and folders, batched, into a CSV.

Every input file gives exactly one row: its predicted class and the
probability of each class, or, for a file that cannot be used, an empty
prediction and the reason.  Rows are written as each batch finishes.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np

from cellscreen.data.images import IGNORED_NAMES, IMAGE_SUFFIXES, ImageReadError, load_prepared
from cellscreen.data.parallel import parallel_map
from cellscreen.engine.checkpoint import load_checkpoint
from cellscreen.engine.inference import predict_proba
from cellscreen.errors import UserError

__all__ = ["list_inputs", "prepare_image", "predict_files"]

_CHUNK = 2048  # files decoded per round; bounds memory whatever the folder size


def list_inputs(inputs: list[str | Path]) -> Iterator[tuple[Path, str | None]]:
    """``(file, None)`` for each candidate image, ``(file, reason)`` for files that are not."""
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in sorted(filenames):
                    yield _classify(Path(dirpath) / name)
        elif path.exists():
            yield _classify(path)
        else:
            yield path, "no such file or folder"


def _classify(path: Path) -> tuple[Path, str | None]:
    if path.name.startswith(".") or path.name.lower() in IGNORED_NAMES:
        return path, "hidden or system file"
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return path, f"not an image file type ({path.suffix or 'no extension'})"
    return path, None


def prepare_image(path: Path, size: int, crop: int) -> np.ndarray | str:
    """The model-ready pixels of one file, or the reason it cannot be used."""
    try:
        return load_prepared(path, size=size, crop=crop)
    except ImageReadError as exc:
        return str(exc)


def predict_files(model: str | Path, inputs: list[str | Path], out: str | Path, *, batch_size: int = 256,
                  tta: bool = False, overwrite: bool = False, workers: int | None = None,
                  progress: bool = True) -> dict[str, int]:
    """Write one CSV row per input file; return ``{"predicted": n, "skipped": m}``."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise UserError(f"{out} already exists; pass --overwrite to replace it")
    checkpoint = load_checkpoint(model)
    classes = checkpoint.classes
    size, crop = checkpoint.data_config.input_size, checkpoint.border_crop
    files = list(list_inputs(inputs))
    if not files:
        raise UserError("no input files found")
    counts = {"predicted": 0, "skipped": 0}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    with tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "predicted", *[f"p_{c}" for c in classes], "status"])
        for start in range(0, len(files), _CHUNK):
            chunk = files[start : start + _CHUNK]
            candidates = [p for p, reason in chunk if reason is None]
            prepared = dict(zip(candidates, parallel_map(partial(prepare_image, size=size, crop=crop), candidates,
                                                         workers=workers, desc="predicting", progress=progress)))
            ok = [p for p in candidates if not isinstance(prepared[p], str)]
            proba = predict_proba(checkpoint.model, np.stack([prepared[p] for p in ok]), batch_size=batch_size,
                                  tta=tta) if ok else np.zeros((0, len(classes)))
            row_of = {p: i for i, p in enumerate(ok)}
            for path, reason in chunk:
                reason = reason or (prepared[path] if isinstance(prepared.get(path), str) else None)
                if reason is not None:
                    writer.writerow([str(path), "", *[""] * len(classes), f"skipped: {reason}"])
                    counts["skipped"] += 1
                else:
                    p = proba[row_of[path]]
                    writer.writerow([str(path), classes[int(p.argmax())], *[f"{v:.6f}" for v in p], "ok"])
                    counts["predicted"] += 1
            handle.flush()
    os.replace(tmp, out)
    return counts
