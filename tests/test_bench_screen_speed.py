"""bench/screen_speed.py's bookkeeping: every stage of a screened field timed, the pipeline left as it was, and
the script run as a user runs it on a tiny stand-in data folder (its figures are not checked)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from cellscreen.screen import detect, overlay, pipeline
from cellscreen.screen.synthetic import make_field
from tests.benchscripts import BENCH, bench, lines
from tests.screen.runs import disc

sys.path.insert(0, str(BENCH))
import screen_speed  # noqa: E402  (a script, imported as the benchmark imports it)

BACKGROUND = (205, 200, 195)


class CountsCalls:
    """A stand-in model: Parasitized when a cell's centre pixel is dark; counts the cells it was given."""

    classes = ("Uninfected", "Parasitized")
    positive_class = "Parasitized"
    description: dict = {}
    input_size, border_crop, interpolation = 16, 0, "reduce-bicubic"

    def __init__(self):
        self.cells = 0

    def predict_batched(self, pixels, batch_size):
        self.cells += len(pixels)
        positive = (pixels[:, 8, 8].mean(axis=1) < 128).astype(np.float32)
        return np.stack([1 - positive, positive], axis=1)


def write_field(path: Path, seed: int, cells: int = 8, size: tuple[int, int] = (160, 120)) -> Path:
    background = np.zeros((size[1], size[0], 3), np.uint8) + np.array(BACKGROUND, np.uint8)
    colours = [(225, 160, 160), (150, 60, 170)]
    field = make_field([disc(9, colours[k % 2]) for k in range(cells)], ["c"] * cells, [False] * cells, background,
                       seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(field.image).save(path, quality=95)
    return path


def test_each_stage_of_a_field_is_timed_and_the_pipeline_is_left_as_it_was(tmp_path):
    paths = [write_field(tmp_path / f"f{k}.png", seed=k) for k in range(3)]
    model = CountsCalls()
    result = screen_speed.time_fields(paths, screen_speed.field_options(model, tmp_path / "out", "classical"),
                                      model)
    assert result["fields"] == 3
    for stage in ("decode", "find", "cut+batch", "classify", "overlay"):
        assert result["stage_cpu_ms"][stage] > 0, stage
    assert result["stage_wall_ms"]["other"] >= 0
    assert sum(result["stage_wall_ms"].values()) <= result["wall_ms_p90"] * 1.5
    assert result["red_median"] > 0 and model.cells >= 4 * min(1, result["red_median"])  # warm-up too
    assert len(list((tmp_path / "out" / pipeline.OVERLAYS).glob("*.png"))) == 3
    assert pipeline.find_cells is detect.find_cells and pipeline.classify_red_cells.__module__ == pipeline.__name__
    assert overlay.overlay_png.__module__ == overlay.__name__ and "predict_batched" not in vars(model)


def test_the_script_times_each_part_it_is_asked_for(tmp_path):
    chula = tmp_path / "smears" / "chula-rbc12" / "Dataset"
    for number in range(1, 63):
        write_field(chula / f"{number}.jpg", seed=number, cells=4, size=(96, 72))
    txl = tmp_path / "smears" / "txl-pbc" / "TXL_PBC" / "images" / "train"
    for number in range(4):
        write_field(txl / f"BloodImage_{number:05d}.jpg", seed=100 + number, cells=4, size=(96, 72))
    found = lines(bench("screen_speed.py", "--data", tmp_path, "--fields", 2, "--skip", "big"))
    parts = found[-1]["parts"]
    assert sorted(parts) == ["Chula 640x480", "TXL-PBC"]
    assert parts["Chula 640x480"]["fields"] == 2 and parts["TXL-PBC"]["fields"] == 2  # the 1st is tuning's
    assert found[-1]["engine"] == "onnx" and found[-1]["threads"]["cores"] >= 1
    assert found[-1]["engine_asked"] == "auto"
    workers = found[-1]["screen_workers"]  # `screen` on one field, then on both, with a process per core
    assert workers["fields"] == [1, 2] and workers["seconds"][1] > 0 and workers["ms_per_field"] == workers[
        "ms_per_field"]


def test_a_missing_data_folder_is_one_line_not_a_traceback(tmp_path):
    result = bench("screen_speed.py", "--data", tmp_path / "nowhere", "--fields", 1)
    assert result.returncode == 2 and "no smears/" in result.stderr
