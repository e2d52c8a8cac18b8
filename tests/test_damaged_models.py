"""Damaged model files: refused by name in one line (exit status 2), never a traceback or a wrong answer.

``badfiles.write_damaged_checkpoints`` makes copies of a trained checkpoint, each damaged in one way (a zero
or negative temperature, NaN weights, wrong shapes, random bytes in place of a graph, absurd sizes, a
self-referencing ensemble, a pickle ...).  Every command that loads a model must refuse each of them with
a message naming the damaged file, and a prediction that is not a finite probability is never returned.
"""

from __future__ import annotations

import numpy as np
import pytest

from cellscreen.errors import UserError
from tests.badfiles import write_damaged_checkpoints
from tests.clitools import run_here

KINDS = ["temperature_zero", "temperature_negative", "temperature_nan", "temperature_text", "border_crop_text",
         "input_size_huge", "std_zero", "two_million_classes", "classes_not_a_list", "positive_class_unknown",
         "ensemble_of_itself", "ensemble_outside", "json_array", "pickle_as_description", "pickle_file",
         "nan_weights", "infinite_weights", "wrong_shapes", "weights_random_bytes", "onnx_random_bytes",
         "int8_random_bytes", "loose_graph_random_bytes", "graph_description_garbage"]
GRAPHS = {"onnx_random_bytes", "int8_random_bytes", "loose_graph_random_bytes", "graph_description_garbage"}
# what the `export` command reads: the checkpoint (a graph beside it is not read, a loose graph is no checkpoint;
# an ensemble is refused as one, before its members are looked at)
NOT_EXPORTED = GRAPHS | {"ensemble_of_itself", "ensemble_outside"}


@pytest.fixture(scope="module")
def damaged(trained_run, tmp_path_factory):
    cases = write_damaged_checkpoints(trained_run.run, tmp_path_factory.mktemp("damaged"))
    assert sorted(cases) == sorted(KINDS)
    return cases


def _one_line_refusal(result, named: str, phrase: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cellscreen: error: "), result.stderr
    assert named in lines[0] and phrase in lines[0], (named, phrase, lines[0])


@pytest.mark.parametrize("engine", ["auto", "torch"])
@pytest.mark.parametrize("kind", KINDS)
def test_predict_refuses_a_damaged_model_by_name(damaged, learnable_cells, tmp_path, kind, engine):
    model, named, phrase = damaged[kind]
    if kind == "int8_random_bytes":
        engine = {"auto": "int8", "torch": "int8"}[engine]
    elif kind in ("onnx_random_bytes", "loose_graph_random_bytes", "graph_description_garbage"):
        if engine == "torch":
            pytest.skip("a graph runs on onnxruntime only")
        engine = "onnx" if kind == "onnx_random_bytes" else "auto"
    out = tmp_path / "predictions.csv"
    result = run_here("predict", str(model), str(learnable_cells / "Parasitized"), "--out", str(out),
                      "--engine", engine, "--workers", "0", "-q")
    _one_line_refusal(result, named, phrase)
    assert not out.exists()


@pytest.mark.parametrize("kind", sorted(set(KINDS) - NOT_EXPORTED))
def test_export_refuses_a_damaged_model_by_name(damaged, tmp_path, kind):
    model, named, phrase = damaged[kind]
    out = tmp_path / "model.onnx"
    result = run_here("export", str(model), "--out", str(out))
    _one_line_refusal(result, named, phrase)
    assert not out.exists()


@pytest.mark.parametrize("kind", ["nan_weights", "temperature_zero", "temperature_negative", "onnx_random_bytes"])
def test_the_service_refuses_to_start_on_a_damaged_model(damaged, kind):
    from cellscreen.serve.app import create_app

    model, named, phrase = damaged[kind]
    with pytest.raises(UserError, match=phrase) as refused:
        create_app(model)
    assert named in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_a_probability_that_is_not_finite_is_never_returned(trained_run, engine):
    """Damage done after loading (or arithmetic that overflows) gives NaN: the predictor refuses to answer."""
    from cellscreen.serve.runtime import load_predictor

    predictor = load_predictor(trained_run.run, engine=engine)
    images = np.random.default_rng(0).integers(0, 256, (5, predictor.input_size, predictor.input_size, 3),
                                               dtype=np.uint8)
    assert np.isfinite(predictor.predict(images)).all()
    broken = predictor._predict

    def with_nan(batch):
        proba = broken(batch)
        proba[1] = np.nan
        return proba

    predictor._predict = with_nan
    with pytest.raises(UserError, match="not a finite probability"):
        predictor.predict(images)
    with pytest.raises(UserError, match="not a finite probability"):
        predictor.predict_batched(images, batch_size=2, tta=True)
