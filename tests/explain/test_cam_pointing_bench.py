"""bench/cam_pointing.py on a few synthetic cells: which cells it keeps, and the figures' bookkeeping."""

import json

import numpy as np
from PIL import Image

from cellscreen.engine.paths import BUNDLED
from tests.benchscripts import bench, lines


def _cell(path, blobs: list[tuple[int, int]], size: int = 120) -> None:
    """A pale pink disc on black with a dark purple blob (radius 5 px) at each of ``blobs``."""
    yy, xx = np.mgrid[:size, :size]
    picture = np.zeros((size, size, 3), np.uint8)
    picture[(yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 2.2) ** 2] = (220, 170, 175)
    for cy, cx in blobs:
        picture[(yy - cy) ** 2 + (xx - cx) ** 2 < 25] = (150, 40, 160)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture).save(path)


def test_only_cells_with_one_clear_stained_body_are_scored(tmp_path):
    folder = tmp_path / "malaria-nih" / "cell_images" / "Parasitized"
    for k, spot in enumerate([(40, 40), (60, 80), (80, 50)]):
        _cell(folder / f"one_{k}.png", [spot])
    _cell(folder / "two.png", [(40, 40), (80, 80)])  # two bodies: ambiguous, left out
    _cell(folder / "none.png", [])  # nothing stained: left out
    rows = lines(bench("cam_pointing.py", "--data", tmp_path, "--cells", 10))
    scored = [row for row in rows if "pointing" in row]
    assert len(scored) == 1 and scored[0]["default"] and scored[0]["cells"] == 3
    body_share = np.pi * 25 / (np.pi * (120 / 2.2) ** 2)  # a blob's share of the disc
    assert abs(scored[0]["chance"] - body_share) < 0.5 * body_share
    assert 0 <= scored[0]["pointing"] <= scored[0]["top5"] <= 1
    assert "compact_cnn6sc" not in rows[-1]["untrained"] and "lenet5" in rows[-1]["untrained"]
    bundled = json.loads((BUNDLED["malaria"] / "test" / "metrics.json").read_text())["metrics"]["accuracy"]
    assert scored[0]["test_accuracy"] == round(bundled, 4)  # the bundled model's test figures, in its folder


def test_a_runs_own_test_accuracy_is_read_beside_its_figures(tmp_path):
    import importlib.util

    from tests.benchscripts import BENCH

    spec = importlib.util.spec_from_file_location("cam_pointing", BENCH / "cam_pointing.py")
    cam_pointing = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cam_pointing)
    run = tmp_path / "run"
    (run / "test").mkdir(parents=True)
    (run / "model.json").write_text("{}")
    assert cam_pointing.test_accuracy(run) is None
    (run / "test" / "metrics.json").write_text(json.dumps({"metrics": {"accuracy": 0.58591}}))
    assert cam_pointing.test_accuracy(run) == 0.5859
