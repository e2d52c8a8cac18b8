"""Reading what a `screen` run wrote, for the tests that compare runs."""

from __future__ import annotations

import csv
import re
from pathlib import Path


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
