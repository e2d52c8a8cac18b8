"""The files a prediction runs on: which are images, and their model-ready pixels.

``list_inputs`` walks files and folders lazily in a fixed (sorted) order and
says why a file cannot be used; ``refuse_missing`` stops a run whose command
line names a file or folder that does not exist; ``prepare_files`` decodes a
few files, as a worker process of ``predict`` or an actor of ``distributed``
does.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from cellscreen.data.images import IGNORED_NAMES, IMAGE_SUFFIXES, ImageReadError, load_prepared
from cellscreen.data.index import valid_utf8_name, walk_tree
from cellscreen.errors import UserError

__all__ = ["list_inputs", "refuse_missing", "prepare_image", "prepare_files"]


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


def refuse_missing(inputs: Iterable[str | Path]) -> None:
    """Refuse an input named on the command line that does not exist: a mistyped path is a mistake to
    report, not a row to skip.  (A broken link exists as a name: it gets a row, as unreadable files do.)"""
    for item in inputs:
        if not os.path.lexists(item):
            raise UserError(f"{item}: no such file or folder; check the path (nothing was written)")


def _classify(path: Path) -> tuple[Path, str | None]:
    if path.name.startswith(".") or path.name.lower() in IGNORED_NAMES:
        return path, "hidden or system file"
    if not valid_utf8_name(str(path)):
        return path, "file name is not valid UTF-8 (rename the file)"
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return path, f"not an image file type ({path.suffix or 'no extension'})"
    return path, None


def prepare_image(path: Path, size: int, crop: int, interpolation: str) -> np.ndarray | str:
    """The model-ready pixels of one file, or the reason it cannot be used."""
    try:
        return load_prepared(path, size=size, crop=crop, interpolation=interpolation)
    except ImageReadError as exc:
        return str(exc)


def prepare_files(paths: list[Path], size: int, crop: int,
                  interpolation: str) -> tuple[np.ndarray, list[str | None]]:
    """Decode a few files (in a worker): their stacked pixels (readable ones) and a reason per file (None: ok)."""
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
