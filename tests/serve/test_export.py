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
