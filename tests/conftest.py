"""Shared fixtures: tiny synthetic cell folders and the real data, if present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REAL_DATA = Path(os.environ.get("CELLSCREEN_DATA") or Path(__file__).resolve().parents[1] / ".." / "shared" / "data")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own empty cache folder; nothing touches ~/.cache."""
    monkeypatch.setenv("CELLSCREEN_CACHE", str(tmp_path_factory.mktemp("cache")))


def write_cell(path: Path, seed: int, size: tuple[int, int] = (12, 10)) -> Path:
    """A small random RGB PNG; a different seed gives different bytes."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def make_malaria_like(root: Path, slides: dict[str, dict[str, int]], *, start_seed: int = 0) -> Path:
    """``cell_images/{Parasitized,Uninfected}`` with NIH-style names for fake slides.

    ``slides`` maps a slide id (``C1``) to cells per class, e.g.
    ``{"C1": {"Parasitized": 2, "Uninfected": 3}}``.
    """
    seed = start_seed
    for slide, per_class in slides.items():
        for label, count in per_class.items():
            for n in range(count):
                write_cell(root / "cell_images" / label / f"{slide}P9ThinF_IMG_2015_cell_{n}.png", seed)
                seed += 1
    return root / "cell_images"


@pytest.fixture
def malaria_like(tmp_path) -> Path:
    """12 fake slides, 3 cells of each class per slide."""
    slides = {f"C{n}": {"Parasitized": 3, "Uninfected": 3} for n in range(1, 13)}
    return make_malaria_like(tmp_path / "malaria", slides)


@pytest.fixture
def real_data() -> Path:
    if not (REAL_DATA / "malaria-nih" / "cell_images").is_dir():
        pytest.skip("real data (../shared/data or $CELLSCREEN_DATA) is not available")
    return REAL_DATA.resolve()
