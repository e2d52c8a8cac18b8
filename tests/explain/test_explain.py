import numpy as np
import pytest
from PIL import Image

from cellscreen.engine.checkpoint import Checkpoint
from cellscreen.errors import UserError
from cellscreen.explain import explain, target_layer
from cellscreen.models import create_model, list_models
from tests.clitools import run
from tests.conftest import make_malaria_like

SMALL = {"alexnet": 64, "seed_allnet": 64, "inception_v3": 75}  # the smallest inputs these accept; others 32 px


@pytest.mark.parametrize("name", list_models())
def test_all_four_kinds_of_picture_for_every_model(name, tmp_path, monkeypatch):
    import cellscreen.explain as explain_module

    real = explain_module.visualise_filters
    monkeypatch.setattr(explain_module, "visualise_filters", lambda model, **kw: real(model, steps=2))
    model = create_model(name, num_classes=2, input_size=SMALL.get(name, 32))
    checkpoint = Checkpoint(model=model.eval(), meta={"model": name, "classes": ["Uninfected", "Parasitized"]})
    size = model.data_config.input_size
    picture = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    index = explain(checkpoint, [("cell", picture)], tmp_path)
    made = {p.name for p in tmp_path.iterdir()}
    layer = target_layer(model)[0]
    assert {"cell-gradcam.png", "cell-top-channels.png", f"filters-{layer}.png", "index.html"} <= made
    assert any(n.startswith("cell-featuremaps-") for n in made)
    for png in tmp_path.glob("*.png"):
        assert Image.open(png).size[0] > 0
    page = index.read_text()
    assert all(f"src='{n}'" in page for n in made if n.endswith(".png"))


@pytest.fixture(scope="module")
def model32(tmp_path_factory):
    """A compact CNN trained at 32 px on untinted spot cells, where the spot is the only evidence."""
    from cellscreen.config import load_config
    from cellscreen.engine.checkpoint import load_checkpoint
    from cellscreen.engine.train import train

    slides = {f"C{n}": {"Parasitized": 12, "Uninfected": 12} for n in range(1, 11)}
    cells = make_malaria_like(tmp_path_factory.mktemp("spots"), slides, learnable=True, size=(32, 32), tint=0)
    config = load_config("default", {"dataset": "malaria-nih", "model": "compact_cnn", "input_size": 32, "epochs": 8,
                                     "batch_size": 16, "lr": 0.01, "val": 0.2, "test": 0.2})
    run_dir = tmp_path_factory.mktemp("run32") / "run"
    return load_checkpoint(train(config, out=run_dir, data=str(cells), progress=False).run).model


@pytest.mark.parametrize("spot", [(10, 10), (22, 22), (10, 22), (22, 10)])
def test_gradcam_looks_at_the_parasite(model32, spot):
    """On the synthetic task the only evidence is the dark spot: of the cell's four quarters, the heat map
    must be hottest in the spot's (the last block of a 32 px compact CNN is 4x4, so a quarter is about its grain)."""
    import torch

    from cellscreen.engine.inference import normalise
    from cellscreen.explain import grad_cam

    size = 32
    picture = np.zeros((size, size, 3), np.uint8)
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 2.2) ** 2
    grain = np.random.default_rng(5).normal(0, 8, (disc.sum(), 3))  # drawn as the training cells are
    picture[disc] = (grain + (200, 160, 170)).clip(0, 255)
    picture[(yy - spot[0]) ** 2 + (xx - spot[1]) ** 2 < (size / 8) ** 2] = (90, 30, 110)
    x = normalise(torch.from_numpy(picture).permute(2, 0, 1)[None].contiguous(), model32.data_config)
    sheet = np.asarray(grad_cam(model32, x, picture, target=1))
    side = sheet.shape[0]
    heat = sheet[:, side + 1 : 2 * side + 1].astype(float)
    redness = heat[..., 0] - heat[..., 2]  # jet colour map: red where the map is high, blue where low
    half = side // 2
    quarters = redness.reshape(2, half, 2, half).mean(axis=(1, 3))
    hottest = np.unravel_index(quarters.argmax(), quarters.shape)
    assert hottest == tuple(int(c >= size / 2) for c in spot), (quarters.round(), spot)


def test_explain_command_skips_bad_inputs_and_refuses_ensembles(trained_run, learnable_cells, tmp_path):
    good = sorted((learnable_cells / "Parasitized").iterdir())[:2]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"nope")
    result = run("explain", str(trained_run.run), *map(str, good), str(bad), "--out", str(tmp_path / "x"),
                 "--no-filters")
    assert result.returncode == 0, result.stderr
    assert "skipped" in result.stdout and "broken.png" in result.stdout
    assert len(list((tmp_path / "x").glob("*-gradcam.png"))) == 2
    run("ensemble", str(trained_run.run), str(trained_run.run), "--out", str(tmp_path / "ens"))
    refused = run("explain", str(tmp_path / "ens"), str(good[0]), "--out", str(tmp_path / "y"))
    assert refused.returncode == 2 and "network checkpoint" in refused.stderr


def test_images_to_explain_renames_repeated_stems_and_stops_at_the_cap(tmp_path):
    from cellscreen.explain import images_to_explain

    model = create_model("lenet5", num_classes=2)
    checkpoint = Checkpoint(model=model.eval(), meta={"model": "lenet5", "classes": ["Uninfected", "Parasitized"],
                                                      "data_config": model.data_config.to_dict()})
    for folder in ("a", "b", "c"):
        (tmp_path / folder).mkdir()
        Image.new("RGB", (40, 40), (200, 100, 150)).save(tmp_path / folder / "cell.png")
    (tmp_path / "a" / "broken.png").write_bytes(b"nope")
    folders = [str(tmp_path / f) for f in ("a", "b", "c")]
    images, notes = images_to_explain(checkpoint, folders, max_images=2)
    assert [name for name, _ in images] == ["cell", "cell_"]
    assert all(picture.shape == (32, 32, 3) for _, picture in images)
    assert any(note.startswith("skipped") and "broken.png" in note for note in notes)
    assert notes[-1] == "only the first 2 images are explained (--max-images)"
    images, notes = images_to_explain(checkpoint, folders[1:], max_images=2)
    assert len(images) == 2 and notes == []  # exactly the cap: nothing left out


def test_explain_refuses_an_empty_list_of_images(tmp_path):
    model = create_model("lenet5", num_classes=2)
    checkpoint = Checkpoint(model=model.eval(), meta={"model": "lenet5", "classes": ["Uninfected", "Parasitized"]})
    with pytest.raises(UserError, match="no readable images"):
        explain(checkpoint, [], tmp_path)
