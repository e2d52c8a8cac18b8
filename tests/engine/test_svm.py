import numpy as np
import pytest

from cellscreen.data.features import N_FEATURES, handcrafted_features
from cellscreen.engine.svm import train_svm
from cellscreen.config import load_config
from cellscreen.engine.kinds import load_checkpoint
from cellscreen.engine.inference import predict_proba
from cellscreen.errors import UserError


def test_features_have_one_length_and_see_colour():
    rng = np.random.default_rng(0)
    pale = np.full((48, 48, 3), (200, 160, 170), np.uint8)
    stained = pale.copy()
    stained[20:28, 20:28] = (90, 30, 110)
    for image in (pale, stained, rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)):
        assert handcrafted_features(image).shape == (N_FEATURES,)
    red_histogram = slice(0, 16)
    assert handcrafted_features(pale)[red_histogram].sum() == pytest.approx(1.0)
    assert not np.allclose(handcrafted_features(pale)[red_histogram], handcrafted_features(stained)[red_histogram])


def _config(**overrides):
    return load_config("default", {"dataset": "malaria-nih", "val": 0.2, "test": 0.2, "input_size": 20, **overrides})


@pytest.fixture(scope="module")
def svm_run(learnable_cells, tmp_path_factory):
    return train_svm(_config(), features="handcrafted", out=tmp_path_factory.mktemp("svm") / "svm",
                     data=str(learnable_cells), C=10.0, progress=False, workers=0)


def test_handcrafted_svm_learns_and_loads_as_a_checkpoint(svm_run):
    run, data, _ = svm_run
    checkpoint = load_checkpoint(run)
    assert checkpoint.meta["kind"] == "svm" and checkpoint.classes == ["Uninfected", "Parasitized"]
    test = data.subsets["test"]
    proba = predict_proba(checkpoint.model, test.images.permute(0, 2, 3, 1).numpy())
    assert np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert (proba.argmax(1) == test.targets.numpy()).mean() > 0.9
    direct = checkpoint.model.pipeline.predict_proba(checkpoint.model.features(test.images.float() / 255))
    assert np.allclose(proba, direct, atol=1e-5)


def test_deep_feature_svm_keeps_its_network(trained_run, learnable_cells, tmp_path):
    run, data, _ = train_svm(_config(), features=str(trained_run.run), out=tmp_path / "deep",
                             data=str(learnable_cells), progress=False, workers=0)
    checkpoint = load_checkpoint(run)
    assert checkpoint.meta["svm"]["features"] == "deep" and (run / "backbone" / "model.safetensors").is_file()
    assert checkpoint.meta["svm"]["n_features"] == 256  # the compact CNN's pooled features
    assert checkpoint.data_config.input_size == trained_run.data.subsets["train"].images.shape[-1]
    test = data.subsets["test"]
    proba = predict_proba(checkpoint.model, test.images.permute(0, 2, 3, 1).numpy())
    assert (proba.argmax(1) == test.targets.numpy()).mean() > 0.8


def test_untrusted_svm_file_is_refused(svm_run, tmp_path):
    from skops.io import dump
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    run, _, _ = svm_run
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    (tampered / "model.json").write_text((run / "model.json").read_text())
    dump(make_pipeline(FunctionTransformer(_not_sklearn)), tampered / "svm.skops")
    with pytest.raises(UserError, match="does not trust"):
        load_checkpoint(tampered)
    (tampered / "svm.skops").write_bytes(b"garbage")
    with pytest.raises(UserError, match="cannot read the SVM"):
        load_checkpoint(tampered)


def _not_sklearn(x):
    return x


def test_svm_needs_each_class_twice(learnable_cells, tmp_path):
    with pytest.raises(UserError, match="run folder .* is not empty"):
        (tmp_path / "x").mkdir()
        (tmp_path / "x" / "file").write_text("")
        train_svm(_config(), features="handcrafted", out=tmp_path / "x", data=str(learnable_cells), progress=False)
    with pytest.raises(UserError, match="--features must be"):
        train_svm(_config(), features="no-such-thing", out=tmp_path / "y", data=str(learnable_cells), progress=False)
