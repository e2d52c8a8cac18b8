"""Each model draws its class activation maps by its own method (the registry says which), and
``explain --cam-method`` overrides it; the report names the method beside the map."""

import importlib.util

import numpy as np
import pytest

from cellscreen.engine.checkpoint import Checkpoint
from cellscreen.errors import UserError
from cellscreen.explain import CAM_METHODS, DEFAULT_CAM_METHOD, explain, model_cam_method
from cellscreen.models import create_model, list_models
from tests.clitools import run

CLASSES = ["Uninfected", "Parasitized"]


def _checkpoint(name: str, input_size: int | None = None) -> Checkpoint:
    model = create_model(name, num_classes=2, input_size=input_size)
    return Checkpoint(model=model.eval(), meta={"model": name, "classes": CLASSES})


def _picture(size: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_seed_allnet_draws_with_layercam_and_every_other_model_with_grad_cam():
    # seed_allnet's Grad-CAM pointed at the parasite for 0.25 of test cells, its LayerCAM for 0.99
    # (BENCHMARKS.md, 2026-12-07, evening); no other model was measured to do better off Grad-CAM
    from cellscreen.models._registry import model_entry

    assert create_model("seed_allnet", num_classes=2, input_size=64).cam_method == "layercam"
    assert create_model("compact_cnn6sc", num_classes=2).cam_method == "gradcam"  # the default model's
    others = {model_entry(name).cam_method for name in list_models() if name != "seed_allnet"}
    assert others == {"gradcam"} and DEFAULT_CAM_METHOD == "gradcam"


def test_a_checkpoint_may_name_its_own_cam_method(tmp_path):
    """The bundled weights draw their maps with LayerCAM (chosen on validation cells), whatever their
    architecture's registry entry says; a description naming something that is not a name is refused."""
    import json
    import shutil

    from cellscreen.engine.checkpoint import load_checkpoint
    from cellscreen.engine.paths import BUNDLED
    from cellscreen.errors import UserError
    from cellscreen.explain.cam import model_cam_method

    assert model_cam_method(load_checkpoint("malaria").model) == "layercam"
    run = tmp_path / "run"
    shutil.copytree(BUNDLED["malaria"], run)
    meta = json.loads((run / "model.json").read_text())
    (run / "model.json").write_text(json.dumps({**meta, "cam_method": None}))
    assert model_cam_method(load_checkpoint(run).model) == "gradcam"  # the registry's, for compact_cnn6sc
    (run / "model.json").write_text(json.dumps({**meta, "cam_method": "__import__('os')"}))
    with pytest.raises(UserError, match="cam_method"):
        load_checkpoint(run)


def test_a_method_given_overrides_the_models_own_and_an_unknown_one_is_refused():
    model = create_model("seed_allnet", num_classes=2, input_size=64)
    assert model_cam_method(model) == "layercam"
    assert model_cam_method(model, "hirescam") == "hirescam"
    with pytest.raises(ValueError, match="unknown CAM method 'gradcam\\+\\+\\+'"):
        model_cam_method(model, "gradcam+++")
    del model.cam_method  # a network not built by the registry
    assert model_cam_method(model) == DEFAULT_CAM_METHOD


def test_explain_names_the_models_own_method_beside_the_map(tmp_path):
    index = explain(_checkpoint("seed_allnet", 64), [("cell", _picture(64))], tmp_path, filters=False)
    assert (tmp_path / "cell-layercam.png").is_file() and not (tmp_path / "cell-gradcam.png").exists()
    page = index.read_text()
    assert "src='cell-layercam.png'" in page and "LayerCAM at stage" in page and "Grad-CAM" not in page


def test_explain_with_a_method_given_draws_and_names_that_method(tmp_path):
    index = explain(_checkpoint("lenet5"), [("cell", _picture(32))], tmp_path, filters=False,
                    cam_method="hirescam")
    assert (tmp_path / "cell-hirescam.png").is_file()
    assert "HiResCAM at stage" in index.read_text()
    with pytest.raises(UserError, match="unknown CAM method"):
        explain(_checkpoint("lenet5"), [("cell", _picture(32))], tmp_path / "x", cam_method="smoothgrad")


def test_explain_command_takes_cam_method_and_writes_it_into_the_report(trained_run, learnable_cells, tmp_path):
    cell = sorted((learnable_cells / "Parasitized").iterdir())[0]
    result = run("explain", str(trained_run.run), str(cell), "--cam-method", "layercam", "--no-filters",
                 "--out", str(tmp_path / "x"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "x" / f"{cell.stem}-layercam.png").is_file()
    assert "LayerCAM at stage" in (tmp_path / "x" / "index.html").read_text()
    default = run("explain", str(trained_run.run), str(cell), "--no-filters", "--out", str(tmp_path / "y"))
    assert default.returncode == 0, default.stderr
    assert "Grad-CAM at stage" in (tmp_path / "y" / "index.html").read_text()  # the default model's own
    refused = run("explain", str(trained_run.run), str(cell), "--cam-method", "smoothgrad", "--out",
                  str(tmp_path / "z"))
    assert refused.returncode == 2 and "--cam-method" in refused.stderr


def test_the_commands_choices_are_explains_methods():
    from cellscreen.cli.train import CAM_METHODS as choices

    assert sorted(choices) == sorted(CAM_METHODS)


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_names_a_known_method(name):
    from cellscreen.models._registry import model_entry

    assert model_entry(name).cam_method in CAM_METHODS


def _cam_pointing():
    from tests.benchscripts import BENCH

    spec = importlib.util.spec_from_file_location("cam_pointing", BENCH / "cam_pointing.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_pointing_benchs_default_line_uses_the_models_own_method():
    cells = []
    for k in range(3):
        body = np.zeros((64, 64), bool)
        body[20 + 5 * k : 26 + 5 * k, 30:36] = True
        cells.append((_picture(64), body, float(body.mean())))
    bench = _cam_pointing()
    rows = bench.measure_model("allnet", _checkpoint("seed_allnet", 64), lambda size, interpolation: cells,
                               methods=[], all_stages=False)
    assert [(row["method"], row["default"], row["own_method"]) for row in rows] == [("layercam", True, "layercam")]
    rows = bench.measure_model("allnet", _checkpoint("seed_allnet", 64), lambda size, interpolation: cells,
                               methods=["gradcam", "layercam"], all_stages=False)
    averaged = [row for row in rows if "+" in row["stages"]]
    assert [(row["method"], row["default"]) for row in averaged] == [("gradcam", False), ("layercam", True)]


def test_the_overlay_the_service_draws_follows_the_models_own_method():
    # serve/app.py's _cam_png calls cam_overlay without a method
    import torch

    from cellscreen.engine.inference import normalise
    from cellscreen.explain import cam_overlay

    torch.manual_seed(0)
    model = create_model("seed_allnet", num_classes=2, input_size=64).eval()
    picture = _picture(64)
    x = normalise(torch.from_numpy(picture[None]).permute(0, 3, 1, 2).contiguous(), model.data_config)
    own, layercam, gradcam = (np.asarray(cam_overlay(model, x, picture, 1, method=m), dtype=np.int16)
                              for m in (None, "layercam", "gradcam"))
    assert np.array_equal(own, layercam) and np.abs(own - gradcam).max() > 0
