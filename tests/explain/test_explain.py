import numpy as np
import pytest
from PIL import Image

from cellscreen.engine.checkpoint import Checkpoint
from cellscreen.errors import UserError
from cellscreen.explain import explain, model_cam_method, network_stages
from cellscreen.models import create_model, list_models
from tests.clitools import run

SMALL = {"alexnet": 64, "seed_allnet": 64, "inception_v3": 75}  # the smallest inputs these accept; others 32 px


@pytest.mark.parametrize("name", list_models())
def test_all_four_kinds_of_picture_for_every_model(name, tmp_path, monkeypatch):
    import cellscreen.explain.pictures as pictures

    real = pictures.visualise_filters
    monkeypatch.setattr(pictures, "visualise_filters", lambda model, **kw: real(model, steps=2, **kw))
    model = create_model(name, num_classes=2, input_size=SMALL.get(name, 32))
    checkpoint = Checkpoint(model=model.eval(), meta={"model": name, "classes": ["Uninfected", "Parasitized"]})
    size = model.data_config.input_size
    picture = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    index = explain(checkpoint, [("cell", picture)], tmp_path)
    made = {p.name for p in tmp_path.iterdir()}
    stages = network_stages(model)
    cam = f"cell-{model_cam_method(model)}.png"  # cell-gradcam.png, cell-layercam.png for seed_allnet
    assert {cam, "cell-top-channels.png", f"filters-{stages[-1].slug}.png", "index.html"} <= made
    assert {f"cell-featuremaps-{s.slug}.png" for s in stages} <= made
    for png in tmp_path.glob("*.png"):
        assert Image.open(png).size[0] > 0
    page = index.read_text()
    assert all(f"src='{n}'" in page for n in made if n.endswith(".png"))
    assert stages[0].title in page and "Advanced" in page
    assert f"feature maps of {stages[0].layer}" not in page  # stages are named for people, not by code names
    assert Image.open(tmp_path / cam).size[0] >= 3 * 256


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
