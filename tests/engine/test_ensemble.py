import numpy as np
import pytest
import torch
from torch.nn import functional as F

from cellscreen.engine.svm import train_svm
from cellscreen.config import load_config
from cellscreen.engine.checkpoint import save_checkpoint
from cellscreen.engine.ensemble import make_ensemble
from cellscreen.engine.inference import logits_to_proba, normalise, predict_proba
from cellscreen.engine.kinds import load_checkpoint
from cellscreen.errors import UserError
from cellscreen.models import create_model
from tests.clitools import run


@pytest.fixture(scope="module")
def members(trained_run, learnable_cells, tmp_path_factory):
    """The trained compact CNN and a hand-crafted SVM at a different input size (24 px against 16)."""
    config = load_config("default", {"dataset": "malaria-nih", "val": 0.2, "test": 0.2, "input_size": 24})
    svm, _, _ = train_svm(config, features="handcrafted", out=tmp_path_factory.mktemp("svm") / "svm",
                          data=str(learnable_cells), progress=False, workers=0)
    return [trained_run.run, svm]


def test_ensemble_averages_member_probabilities(members, trained_run, tmp_path):
    path = make_ensemble(members, tmp_path / "ens")
    ensemble = load_checkpoint(path.parent)
    assert ensemble.meta["kind"] == "ensemble" and ensemble.data_config.input_size == 24
    assert ensemble.classes == load_checkpoint(members[0]).classes
    test = trained_run.data.subsets["test"]
    # each member sees the 24 px batch at its own size: the network's is resized to 16 px inside
    images24 = np.stack([np.array(_resize(img, 24)) for img in test.images.permute(0, 2, 3, 1).numpy()])
    got = predict_proba(ensemble.model, images24)
    net = load_checkpoint(members[0]).model.eval()
    x = torch.from_numpy(images24).permute(0, 3, 1, 2).float() / 255
    x16 = F.interpolate(x, size=(16, 16), mode="bilinear", antialias=True, align_corners=False)
    # the 16 px floats as they are: rounded to bytes, a cell near the trained network's boundary can flip
    with torch.no_grad():
        p_net = logits_to_proba(net(normalise(x16, net.data_config)), net.temperature).numpy()
    p_svm = predict_proba(load_checkpoint(members[1]).model, images24)
    assert np.allclose(got, (p_net + p_svm) / 2, atol=1e-3)
    # the folder is self-contained: the sources can go
    default = load_config("default").model
    assert sorted(p.name for p in (tmp_path / "ens" / "members").iterdir()) == [f"00-{default}", "01-svm"]


def _resize(image, size):
    from PIL import Image

    return Image.fromarray(image).resize((size, size), Image.BICUBIC)


def test_ensemble_members_must_agree(trained_run, tmp_path):
    other = create_model("compact_cnn", num_classes=3)
    save_checkpoint(tmp_path / "three", other, {"classes": ["a", "b", "c"]})
    with pytest.raises(UserError, match="must classify the same way"):
        make_ensemble([trained_run.run, tmp_path / "three"], tmp_path / "ens")
    with pytest.raises(UserError, match="at least two"):
        make_ensemble([trained_run.run], tmp_path / "ens")
    make_ensemble([trained_run.run, trained_run.run], tmp_path / "ens")
    with pytest.raises(UserError, match="not empty"):
        make_ensemble([trained_run.run, trained_run.run], tmp_path / "ens")


def test_ensemble_command_evaluates_and_predicts(members, learnable_cells, tmp_path):
    made = run("ensemble", *map(str, members), "--out", str(tmp_path / "ens"))
    assert made.returncode == 0, made.stderr
    evaluated = run("evaluate", str(tmp_path / "ens"), str(learnable_cells), "-d", "malaria-nih", "--out",
                    str(tmp_path / "eval"), "--bootstrap", "0", "-q")
    assert evaluated.returncode == 0, evaluated.stderr
    predicted = run("predict", str(tmp_path / "ens"), str(learnable_cells / "Parasitized"), "--out",
                    str(tmp_path / "p.csv"), "-q")
    assert predicted.returncode == 0, predicted.stderr
    rows = (tmp_path / "p.csv").read_text().splitlines()[1:]
    assert len(rows) == 120 and sum(",Parasitized," in r for r in rows) > 100
