"""What the screen tests share: a drawn cell, and reading what a `screen` run wrote."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np


def disc(radius: int, colour) -> np.ndarray:
    """A round cell of one colour on black, ``2 * radius + 1`` pixels across."""
    side = 2 * radius + 1
    yy, xx = np.mgrid[:side, :side]
    crop = np.zeros((side, side, 3), np.uint8)
    crop[(yy - radius) ** 2 + (xx - radius) ** 2 <= radius**2] = colour
    return crop


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def outputs(out: Path) -> dict[str, bytes]:
    """Every file a run wrote, by name; the report without its start time and the engine it names, and without
    ``screen.json`` (which records both)."""
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    files["report.html"] = re.sub(rb"Run started [^<]*|\(engine \w+\)", b"", files["report.html"])
    files.pop("screen.json")
    return files
