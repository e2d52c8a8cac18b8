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


def write_cell(path: Path, seed: int, size: tuple[int, int] = (12, 10), parasite: bool | None = None,
               tint: float = 12.0) -> Path:
    """A small random RGB PNG; a different seed gives different bytes.

    With ``parasite`` set, the picture is a pale disc on black, with a dark
    purple spot when ``parasite`` is true: a task a network can learn. ``tint``
    is the spread of each cell's overall colour (0: every cell stained alike).
    """
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    if parasite is None:
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    else:
        yy, xx = np.mgrid[:h, :w]
        disc = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (min(h, w) / 2.2) ** 2
        pixels = np.zeros((h, w, 3), np.uint8)
        tint_rgb = rng.normal(0, tint, 3)  # each cell stained a little differently, as on real slides
        pixels[disc] = (rng.normal(0, 8, (disc.sum(), 3)) + (200, 160, 170) + tint_rgb).clip(0, 255)
        if parasite:
            cy, cx = rng.integers(h // 3, 2 * h // 3), rng.integers(w // 3, 2 * w // 3)
            spot = (yy - cy) ** 2 + (xx - cx) ** 2 < (min(h, w) / 8) ** 2
            pixels[spot] = (90, 30, 110)
    Image.fromarray(pixels).save(path)
    return path


def make_malaria_like(root: Path, slides: dict[str, dict[str, int]], *, start_seed: int = 0,
                      learnable: bool = False, size: tuple[int, int] = (12, 10), tint: float = 12.0) -> Path:
    """``cell_images/{Parasitized,Uninfected}`` with NIH-style names for fake slides.

    ``slides`` maps a slide id (``C1``) to cells per class, e.g.
    ``{"C1": {"Parasitized": 2, "Uninfected": 3}}``.
    """
    seed = start_seed
    for slide, per_class in slides.items():
        for label, count in per_class.items():
            for n in range(count):
                parasite = (label == "Parasitized") if learnable else None
                write_cell(root / "cell_images" / label / f"{slide}P9ThinF_IMG_2015_cell_{n}.png", seed, size, parasite, tint)
                seed += 1
    return root / "cell_images"


@pytest.fixture
def malaria_like(tmp_path) -> Path:
    """12 fake slides, 3 cells of each class per slide."""
    slides = {f"C{n}": {"Parasitized": 3, "Uninfected": 3} for n in range(1, 13)}
    return make_malaria_like(tmp_path / "malaria", slides)


@pytest.fixture(scope="session")
def learnable_cells(tmp_path_factory) -> Path:
    """10 fake slides with 12 cells per class: parasitized cells carry a dark spot."""
    slides = {f"C{n}": {"Parasitized": 12, "Uninfected": 12} for n in range(1, 11)}
    return make_malaria_like(tmp_path_factory.mktemp("learnable"), slides, learnable=True, size=(20, 20))


@pytest.fixture(scope="session")
def trained_run(learnable_cells, tmp_path_factory):
    """A compact CNN trained for a few epochs on ``learnable_cells`` (shared by the tests)."""
    from cellscreen.config import load_config
    from cellscreen.engine.train import train

    config = load_config("default", {"dataset": "malaria-nih", "input_size": 16, "epochs": 6, "batch_size": 16,
                                     "lr": 0.01, "val": 0.2, "test": 0.2})
    return train(config, out=tmp_path_factory.mktemp("run") / "run", data=str(learnable_cells), progress=False)


def softened_copy(run: Path, out: Path, divide_by: float) -> Path:
    """A copy of the checkpoint in ``run`` whose classifier is divided by ``divide_by``, written to ``out``.

    A model trained on the learnable cells is sure of every cell: its probabilities are 0 and 1 to the
    printed digits, whatever changes in how they are computed.  Scaled down, they follow the computation."""
    import json

    import torch

    from cellscreen.engine.checkpoint import load_checkpoint, save_checkpoint

    meta = json.loads((run / "model.json").read_text())
    model = load_checkpoint(run).model
    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        head.weight /= divide_by
        head.bias /= divide_by
    save_checkpoint(out, model, {k: v for k, v in meta.items() if k != "weights_sha256"})
    return out


@pytest.fixture
def real_data() -> Path:
    if not (REAL_DATA / "malaria-nih" / "cell_images").is_dir():
        pytest.skip("real data (../shared/data or $CELLSCREEN_DATA) is not available")
    return REAL_DATA.resolve()


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance of 2 CPUs for a module's in-process runs (code that finds a running session uses
    it as it is); skipped where Ray is not installed."""
    import shutil
    import tempfile

    ray = pytest.importorskip("ray")
    folder = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=folder)
    yield
    ray.shutdown()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for a module's page tests; skipped where Debian's chromium is not installed."""
    from tests.browser import CHROMIUM, NO_CHROMIUM, chromium  # playwright only for the tests that use it

    if CHROMIUM is None:
        pytest.skip(NO_CHROMIUM)
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser):
    """A new 1400x1000 page; the test fails if a script on it throws."""
    from tests.browser import watched_page

    with watched_page(browser) as opened:
        yield opened
