"""Running the scripts in bench/ as a user runs them, on a tiny synthetic malaria-like folder (the tests of
the cross-validation scripts that BENCHMARKS.md's accuracy figures come from)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import make_malaria_like, write_cell

BENCH = Path(__file__).resolve().parents[1] / "bench"
SLIDES = [f"C{n}" for n in range(1, 13)]
# small and quick, but enough for a model trained on three slides to learn the spot
QUICK = ["--set", "input_size=16", "--set", "epochs=20", "--set", "batch_size=16", "--set", "lr=0.01"]


def bench(script: str, *args, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(BENCH / script), *map(str, args)], capture_output=True,
                            text=True, env=env, timeout=600)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def lines(result: subprocess.CompletedProcess) -> list[dict]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def read_rows(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(row for row in handle if not row.startswith("#")))


def make_cells(root: Path, cache: Path) -> tuple[Path, dict]:
    """12 fake slides of 16 cells per class; on each slide one cell with a parasite is filed as uninfected.
    Returns the folder and an environment whose preprocessing cache is ``cache``, with one thread per
    process: the tests run two at a time on two cores, and more threads than cores slow every one of them."""
    images = make_malaria_like(root, {slide: {"Parasitized": 16, "Uninfected": 16} for slide in SLIDES},
                               learnable=True, size=(20, 20))
    for n, slide in enumerate(SLIDES):
        write_cell(images / "Uninfected" / f"{slide}P9ThinF_IMG_2015_cell_99.png", 10_000 + n, (20, 20), True)
    return images, {**os.environ, "CELLSCREEN_CACHE": str(cache), "OMP_NUM_THREADS": "1"}


def split_manifest(images: Path, out: Path, env: dict, *options: str) -> Path:
    """``cellscreen split`` of ``images`` (by slide) into ``out``, with ``options`` (e.g. a k-fold split)."""
    subprocess.run([str(Path(sys.executable).with_name("cellscreen")), "split", "-d", "malaria-nih", "--data",
                    str(images), *options, "--out", str(out), "-q"], check=True, env=env)
    return out
