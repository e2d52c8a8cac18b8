"""Exported models give the same probabilities as PyTorch, on real cells and at any batch size."""

import json

import numpy as np
import pytest

from tests.clitools import run


def test_onnx_export_of_the_bundled_model_matches_torch_on_real_cells(real_data, tmp_path):
    import onnx
    import onnxruntime as ort

    from cellscreen.data.images import load_prepared
    from cellscreen.engine.checkpoint import load_checkpoint
    from cellscreen.engine.inference import predict_proba

    cells = real_data / "malaria-nih" / "cell_images"
    out = tmp_path / "malaria.onnx"
    made = run("export", "malaria", "--out", str(out), "--check-data", str(cells / "Parasitized"))
    assert made.returncode == 0, made.stderr
    assert "max probability difference" in made.stdout
    description = json.loads((tmp_path / "malaria.onnx.json").read_text())
    bundled = load_checkpoint("malaria")
    size = bundled.data_config.input_size
    assert description["classes"] == ["Uninfected", "Parasitized"]
    assert description["preprocessing"]["resize"]["size"] == size
    assert description["parity"]["max_probability_difference"] < 1e-4
    assert not list(tmp_path.glob("*.data"))  # one file, no external weights
    assert any(p.key == "cellscreen" for p in onnx.load(str(out)).metadata_props)

    picked = sorted((cells / "Parasitized").iterdir())[:30] + sorted((cells / "Uninfected").iterdir())[:30]
    images = np.stack([load_prepared(p, size=size) for p in picked])
    expected = predict_proba(bundled.model, images)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for batch in (1, 37, 60):  # the batch size is dynamic
        got = np.concatenate([session.run(["probabilities"], {"images": images[i:i + batch]})[0]
                              for i in range(0, 60, batch)])
        assert np.abs(got - expected).max() < 1e-4
    again = run("export", "malaria", "--out", str(out))
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_torchscript_export_runs_without_cellscreen(trained_run, learnable_cells, tmp_path):
    import torch

    from cellscreen.serve.export import export_model

    out = tmp_path / "model.pt"
    report = export_model(trained_run.run, out, fmt="torchscript", check_data=learnable_cells)
    assert report.max_difference < 1e-4 and "cells from" in report.checked_on
    extra = {"cellscreen.json": ""}
    module = torch.jit.load(str(out), _extra_files=extra)
    assert json.loads(extra["cellscreen.json"])["classes"] == ["Uninfected", "Parasitized"]
    probabilities, logits = module(torch.zeros((3, 16, 16, 3), dtype=torch.uint8))
    assert probabilities.shape == (3, 2) and torch.allclose(probabilities.sum(1), torch.ones(3))


@pytest.mark.parametrize("name", ["seed_malaria_cnn", "lenet5", "mobilenet_v3_small"])
def test_other_architectures_export_with_parity(name, tmp_path):
    """A single sigmoid output (seed CNN), a 32 px LeNet and a timm network, on random weights."""
    from cellscreen.engine.checkpoint import save_checkpoint
    from cellscreen.models import create_model
    from cellscreen.serve.export import export_model

    model = create_model(name, num_classes=2, input_size=32 if name != "seed_malaria_cnn" else 48).eval()
    save_checkpoint(tmp_path / "run", model, {"classes": ["a", "b"]})
    report = export_model(tmp_path / "run", tmp_path / f"{name}.onnx")
    assert report.max_difference < 1e-4 and "random" in report.checked_on


def test_export_refuses_an_svm_and_unknown_formats(tmp_path, trained_run):
    from cellscreen.serve.export import export_model

    made = run("export", str(trained_run.run), "--format", "tflite", "--out", str(tmp_path / "m"))
    assert made.returncode == 2 and "invalid choice" in made.stderr
    meta = json.loads((trained_run.run / "model.json").read_text())
    svm = tmp_path / "svm"
    svm.mkdir()
    (svm / "model.json").write_text(json.dumps({**meta, "kind": "svm"}))
    with pytest.raises(Exception, match="only a trained network can be exported"):
        export_model(svm, tmp_path / "svm.onnx")


def test_int8_export_keeps_the_decisions_and_runs_in_predict(trained_run, learnable_cells, tmp_path):
    import onnx

    from cellscreen.data.images import load_prepared
    from cellscreen.serve.export import export_model
    from cellscreen.serve.runtime import load_predictor

    out = tmp_path / "model.int8.onnx"
    report = export_model(trained_run.run, out, fmt="onnx-int8", check_data=learnable_cells)
    assert report.agreement >= 0.99 and report.checked_on.startswith("the other")
    description = json.loads((tmp_path / "model.int8.onnx.json").read_text())
    assert description["format"] == "onnx-int8" and "calibrated_on" in description["quantization"]
    assert "folded into the first convolution" in description["quantization"]["normalisation"]
    nodes = onnx.load(str(out)).graph.node
    assert {"QuantizeLinear", "DequantizeLinear"} <= {node.op_type for node in nodes}
    # the normalisation is folded into the first convolution: the model's six and no 1x1 one before them
    assert sum(node.op_type == "Conv" for node in nodes) == 6
    # compact_cnn6s's space-to-depth step is done on the uint8 pixels, with the move to channels first
    assert [node.op_type for node in nodes].count("Transpose") == 1
    # a colour step before the first convolution (compact_cnn6sc's gains) stays in float: none of its
    # steps is given 8-bit values
    first_conv = next(i for i, node in enumerate(nodes) if node.op_type == "Conv")
    dequantised = {name for node in nodes if node.op_type == "DequantizeLinear" for name in node.output}
    assert not any(dequantised.intersection(node.input) for node in nodes[:first_conv]
                   if node.op_type in ("ReduceMax", "ReduceSum", "Mul", "Div"))

    paths = sorted(learnable_cells.rglob("*.png"))
    images = np.stack([load_prepared(p, size=16) for p in paths])
    int8, fp32 = load_predictor(out), load_predictor(trained_run.run, engine="onnx")
    assert int8.classes == fp32.classes
    got, expected = int8.predict(images), fp32.predict(images)
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.99
    assert np.abs(got - expected).max() < 0.1
    # the head stays in float: a quantised softmax would give 0 or at least 1/255, nothing in between
    assert ((got > 0) & (got < 1 / 510)).any()


@pytest.mark.parametrize("name", ["compact_cnn6p", "compact_cnn6s"])  # the second after a space-to-depth step
def test_folding_the_normalisation_keeps_the_outputs_or_declines(name):
    import torch
    from torch import nn

    from cellscreen.models import create_model
    from cellscreen.serve.exported_model import ExportedModel, fold_std

    torch.manual_seed(0)
    model = create_model(name, num_classes=2, input_size=32).eval()
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    folded = fold_std(model, [v * 255 for v in std], 32)
    images = torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8)
    with torch.no_grad():
        expected = ExportedModel(model, mean, std)(images)[1]
        got = ExportedModel(folded, mean, std, normalise="fold", size=32)(images)[1]
    folded_conv = next(m for m in folded.modules() if isinstance(m, nn.Conv2d))
    assert torch.allclose(got, expected, atol=1e-4) and not torch.equal(folded_conv.weight, conv.weight)
    # a first convolution that is not the first thing done to the input cannot take the division
    shifted = nn.Sequential(nn.Tanh(), model)
    assert fold_std(shifted, [v * 255 for v in std], 32) is None


def test_a_leading_space_to_depth_step_is_done_on_the_pixels_or_left_in_the_model():
    import torch
    from torch import nn

    from cellscreen.models import create_model
    from cellscreen.serve.exported_model import ExportedModel, fold_std, lift_space_to_depth

    torch.manual_seed(0)
    model = create_model("compact_cnn6s", num_classes=2, input_size=32).eval()
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    lifted, block = lift_space_to_depth(model, 32)
    assert block == 2 and not any(isinstance(m, nn.PixelUnshuffle) for m in lifted.modules())
    assert any(isinstance(m, nn.PixelUnshuffle) for m in model.modules())  # the caller's model is left as it was
    images = torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8)
    folded = fold_std(lifted, [v * 255 for v in std for _ in range(4)], 16)
    with torch.no_grad():
        expected = ExportedModel(model, mean, std)(images)[1]
        got = ExportedModel(lifted, mean, std, space_to_depth=2)(images)[1]
        got_folded = ExportedModel(folded, mean, std, normalise="fold", size=32, space_to_depth=2)(images)[1]
    assert torch.allclose(got, expected, atol=1e-4) and torch.allclose(got_folded, expected, atol=1e-4)

    class Late(nn.Module):  # its PixelUnshuffle comes first in module order, but not first in what it does
        def __init__(self):
            super().__init__()
            self.unshuffle, self.conv = nn.PixelUnshuffle(2), nn.Conv2d(12, 4, 3)

        def forward(self, x):
            return self.conv(self.unshuffle(x.flip(-1)))

    late = Late()
    assert lift_space_to_depth(late, 32) == (late, 1)
    assert lift_space_to_depth(model, 31)[1] == 1  # an odd side has no 2x2 blocks
    plain = create_model("compact_cnn6p", num_classes=2, input_size=32)
    assert lift_space_to_depth(plain, 32) == (plain, 1)


def test_larger_pixel_blocks_are_rearranged_on_the_pixels_too():
    """A ``CompactCNN`` folding 3x3 blocks: the lift, the folded normalisation and the graph's own
    rearrangement give the model's outputs, as for 2x2 blocks."""
    import torch

    from cellscreen.models.compact import CompactCNN
    from cellscreen.serve.exported_model import ExportedModel, fold_std, lift_space_to_depth

    torch.manual_seed(0)
    model = CompactCNN(num_classes=2, widths=(8, 16, 16), pool_before_norm=True, space_to_depth=3).eval()
    assert model.features[0][1].in_channels == 27
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    lifted, block = lift_space_to_depth(model, 48)
    assert block == 3
    folded = fold_std(lifted, [v * 255 for v in std for _ in range(9)], 16)
    images = torch.randint(0, 256, (4, 48, 48, 3), dtype=torch.uint8)
    with torch.no_grad():
        expected = ExportedModel(model, mean, std)(images)[1]
        got = ExportedModel(lifted, mean, std, space_to_depth=3)(images)[1]
        got_folded = ExportedModel(folded, mean, std, normalise="fold", size=48, space_to_depth=3)(images)[1]
    assert torch.allclose(got, expected, atol=1e-4) and torch.allclose(got_folded, expected, atol=1e-4)


def test_int8_export_needs_real_cells_to_calibrate(tmp_path):
    from cellscreen.engine.checkpoint import save_checkpoint
    from cellscreen.errors import UserError
    from cellscreen.models import create_model
    from cellscreen.serve.export import export_model

    save_checkpoint(tmp_path / "run", create_model("compact_cnn", num_classes=2, input_size=32).eval(),
                    {"classes": ["a", "b"]})
    with pytest.raises(UserError, match="calibrated on real cells"):
        export_model(tmp_path / "run", tmp_path / "m.onnx", fmt="onnx-int8")
    assert not list(tmp_path.glob("m.onnx*"))


def test_int8_export_of_the_bundled_model_on_real_cells(real_data, tmp_path):
    cells = real_data / "malaria-nih" / "cell_images"
    out = tmp_path / "malaria.int8.onnx"
    made = run("export", "malaria", "--format", "onnx-int8", "--out", str(out), "--check-data", str(cells))
    assert made.returncode == 0, made.stderr
    parity = json.loads((tmp_path / "malaria.int8.onnx.json").read_text())["parity"]
    assert parity["class_agreement"] >= 0.99 and "256" in parity["checked_on"]
    some = tmp_path / "some"
    some.mkdir()
    for path in sorted((cells / "Uninfected").iterdir())[::20]:
        (some / path.name).symlink_to(path)
    predicted = run("predict", str(out), str(some), "--out", str(tmp_path / "p.csv"), "-q")
    assert predicted.returncode == 0, predicted.stderr
    rows = (tmp_path / "p.csv").read_text().splitlines()[1:]
    assert len(rows) > 200 and sum(",Uninfected," in r for r in rows) / len(rows) > 0.9


def test_the_int8_engine_runs_a_runs_own_8bit_graph_and_refuses_a_stale_one(trained_run, learnable_cells, tmp_path):
    import shutil

    from cellscreen.engine.checkpoint import load_checkpoint, save_checkpoint
    from cellscreen.errors import UserError
    from cellscreen.models import create_model
    from cellscreen.serve.export import export_model
    from cellscreen.serve.runtime import load_predictor

    run_dir = tmp_path / "run"
    shutil.copytree(trained_run.run, run_dir)
    with pytest.raises(UserError, match="has no 8-bit graph.*--format onnx-int8"):
        load_predictor(run_dir, engine="int8")
    export_model(run_dir, run_dir / "model.int8.onnx", fmt="onnx-int8", check_data=learnable_cells)
    predictor = load_predictor(run_dir, engine="int8")
    assert predictor.engine == "onnx" and predictor.description["format"] == "onnx-int8"
    assert predictor.predict(np.zeros((2, 16, 16, 3), np.uint8)).shape == (2, 2)

    meta = json.loads((run_dir / "model.json").read_text())
    retrained = create_model(meta["model"], num_classes=2, input_size=16).eval()
    save_checkpoint(run_dir, retrained, {k: v for k, v in load_checkpoint(run_dir).meta.items()
                                         if k != "weights_sha256"})
    with pytest.raises(UserError, match="stale"):
        load_predictor(run_dir, engine="int8")


def test_the_bundled_model_has_a_current_8bit_graph():
    from cellscreen.serve.runtime import load_predictor

    predictor = load_predictor("malaria", engine="int8")
    assert predictor.classes == ["Uninfected", "Parasitized"]
    assert predictor.description["parity"]["class_agreement"] >= 0.99


def test_a_leading_colour_norm_is_done_on_the_pixels_before_the_rest_is_lifted():
    """compact_cnn6sc: the export takes the colour step out of the model and does it on the pixels, laid out in
    2x2 blocks, so that its space-to-depth step and the division by the standard deviation can still be
    lifted and folded; the outputs stay the model's.  The 8-bit export keeps that step in float."""
    import onnx
    import torch
    from torch import nn

    from cellscreen.models import create_model
    from cellscreen.models.layers import CellColourNorm
    from cellscreen.serve.export import _float_nodes
    from cellscreen.serve.exported_model import ExportedModel, fold_std, lift_colour_norm, lift_space_to_depth

    torch.manual_seed(0)
    model = create_model("compact_cnn6sc", num_classes=2, input_size=32).eval()
    config = model.data_config
    without, colour = lift_colour_norm(model)
    assert isinstance(colour, CellColourNorm) and isinstance(without.colour, nn.Identity)
    assert isinstance(model.colour, CellColourNorm)  # the caller's model is left as it was
    plain = create_model("compact_cnn6s", num_classes=2, input_size=32)
    assert lift_colour_norm(plain) == (plain, None)
    lifted, block = lift_space_to_depth(without, 32)
    folded = fold_std(lifted, [v * 255 for v in config.std for _ in range(4)], 16)
    assert block == 2 and folded is not None
    yy, xx = np.mgrid[:32, :32]
    images = np.zeros((4, 32, 32, 3), np.uint8)  # pale discs on black, each with its own tint
    images[:, (yy - 16) ** 2 + (xx - 16) ** 2 < 13 ** 2] = np.random.default_rng(0).integers(120, 230, (4, 1, 3))
    images = torch.from_numpy(images)
    wrapped = ExportedModel(folded, config.mean, config.std, normalise="fold", size=32, space_to_depth=2,
                            colour=colour).eval()
    with torch.no_grad():
        expected = ExportedModel(model, config.mean, config.std)(images)[1]
        got = wrapped(images)[1]
    assert torch.allclose(got, expected, atol=1e-4)
    program = torch.onnx.export(wrapped, (images,), None, input_names=["images"],
                                output_names=["probabilities", "logits"], dynamo=True, verbose=False)
    nodes = program.model_proto.graph.node
    kept = set(_float_nodes(program.model_proto, stem=True))
    first_conv = next(i for i, node in enumerate(nodes) if node.op_type == "Conv")
    assert {node.name for node in nodes[:first_conv]} <= kept and nodes[first_conv].name not in kept
    assert any(node.op_type == "ReduceMax" for node in nodes[:first_conv])
    assert not set(_float_nodes(program.model_proto)) & {node.name for node in nodes[:first_conv]}
    onnx.checker.check_model(program.model_proto)
