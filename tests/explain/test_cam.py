"""Class activation maps: their size, the stage they are read at, their drawing, and that they find a dot."""

import math

import numpy as np
import pytest
import torch

from cellscreen.engine.inference import normalise
from cellscreen.explain import (
    CAM_FRACTION,
    cam_overlay,
    cam_stage,
    cam_stages,
    class_activation_map,
    network_stages,
)
from cellscreen.models import create_model, list_models

SMALL = {"alexnet": 64, "seed_allnet": 64, "inception_v3": 75}  # the smallest inputs these accept; others 32 px


def _input(picture: np.ndarray, model) -> torch.Tensor:
    return normalise(torch.from_numpy(picture).permute(2, 0, 1)[None].contiguous(), model.data_config)


@pytest.mark.parametrize("name, size", [("lenet5", 32), ("compact_cnn6sc", 32), ("seed_malaria_cnn", 40)])
def test_the_map_has_the_size_of_the_input(name, size):
    model = create_model(name, num_classes=2, input_size=size).eval()
    picture = np.random.default_rng(1).integers(0, 256, (size, size, 3), dtype=np.uint8)
    heat = class_activation_map(model, _input(picture, model), 1)
    assert heat.shape == (size, size)
    assert heat.min() >= 0 and heat.max() <= 1


@pytest.mark.parametrize("name", list_models())
def test_the_map_is_read_at_the_deepest_stage_fine_enough_to_find_a_ring(name):
    with torch.device("meta"):  # shapes only (see below)
        model = create_model(name, num_classes=2, input_size=SMALL.get(name, 32))
        size = model.data_config.input_size
        stages = network_stages(model)
    chosen = cam_stage(stages, size)
    wanted = math.ceil(size * CAM_FRACTION)
    sides = [(s.layer, s.side) for s in stages]
    if any(s.side >= wanted for s in stages):
        assert chosen.side >= wanted, sides
        assert all(s.side < wanted for s in stages[stages.index(chosen) + 1:]), sides
    else:  # AlexNet's first conv has stride 4: its finest stage is the best there is
        assert chosen.side == max(s.side for s in stages), sides
    assert chosen.title.startswith(f"stage {chosen.number} ({chosen.side}x{chosen.side}, ")
    averaged = cam_stages(stages, size)
    assert averaged[-1] is chosen and len(averaged) == min(2, chosen.number)
    assert [s.number for s in averaged] == list(range(chosen.number - len(averaged) + 1, chosen.number + 1))


# Registered models with no stage as fine as a quarter of their own input side, and their finest side: AlexNet's
# first convolution (11 px, stride 4) gives 55 squares for 224 px, a grid of 4 px like a quarter's 56, one
# square fewer for the border its kernel does not cover.  A new model that lands here must be looked at.
COARSER_THAN_A_QUARTER = {"alexnet": 55}


@pytest.mark.parametrize("name", list_models())
def test_every_model_at_its_own_input_size_is_read_at_a_quarter_of_the_side_or_finer(name):
    with torch.device("meta"):  # shapes only: no weights filled in, no arithmetic, so even VGG16 takes no time
        model = create_model(name, num_classes=2)
        size = model.data_config.input_size
        stages = network_stages(model)
    averaged = cam_stages(stages, size)
    sides = [(s.layer, s.side) for s in stages]
    assert all(s.side >= averaged[-1].side for s in averaged), sides  # the other map drawn is finer still
    if name in COARSER_THAN_A_QUARTER:
        assert averaged[-1].side == max(s.side for s in stages) == COARSER_THAN_A_QUARTER[name], sides
        assert round(size / averaged[-1].side) <= 1 / CAM_FRACTION, sides
    else:
        assert averaged[-1].side >= math.ceil(size * CAM_FRACTION), sides


def test_the_default_model_is_read_at_16x16_not_at_its_2x2_last_stage():
    model = create_model("compact_cnn6sc", num_classes=2)
    stages = network_stages(model)
    assert [s.side for s in stages] == [32, 16, 8, 4, 2, 2]
    assert cam_stage(stages, 64).side == 16 and stages[-1].side == 2
    assert [s.side for s in cam_stages(stages, 64)] == [32, 16]


def test_the_overlay_is_large_and_carries_a_colour_bar_from_blue_to_red():
    model = create_model("lenet5", num_classes=2).eval()
    picture = np.full((32, 32, 3), 180, np.uint8)
    image = np.asarray(cam_overlay(model, _input(picture, model), picture, 0))
    assert image.shape[1] >= 256 and image.shape[0] > image.shape[1]  # the bar is under the square overlay
    bar = image[image.shape[1] + 4].astype(int)  # a row inside the colour bar
    assert bar[2, 2] > bar[2, 0] and bar[-3, 0] > bar[-3, 2]  # blue at "low", red at "high"


def _dotted_cells(count: int, rng: np.random.Generator, size: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pale discs on black; half carry a dark purple dot somewhere inside.  Returns pictures, labels, dots."""
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 2.1) ** 2
    pictures = np.zeros((count, size, size, 3), np.uint8)
    labels = np.arange(count) % 2
    dots = rng.integers(7, size - 7, (count, 2))
    for k in range(count):
        pictures[k][disc] = (rng.normal(0, 8, (disc.sum(), 3)) + (200, 160, 170)).clip(0, 255)
        if labels[k]:
            pictures[k][(yy - dots[k, 0]) ** 2 + (xx - dots[k, 1]) ** 2 < 6] = (90, 30, 110)
    return pictures, labels, dots


@pytest.fixture(scope="module")
def dot_model():
    """A compact CNN trained for a few steps to tell discs with a dark dot from discs without."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = create_model("compact_cnn", num_classes=2, input_size=32)  # its map is read at 16x16 and 8x8
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(60):  # enough for batch norm's running statistics to settle too
        pictures, labels, _ = _dotted_cells(32, rng)
        x = normalise(torch.from_numpy(pictures).permute(0, 3, 1, 2).contiguous(), model.data_config)
        loss = torch.nn.functional.cross_entropy(model(x), torch.from_numpy(labels))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


def test_a_model_that_learned_the_dot_is_shown_pointing_at_it(dot_model):
    pictures, labels, dots = _dotted_cells(24, np.random.default_rng(7))
    x = normalise(torch.from_numpy(pictures).permute(0, 3, 1, 2).contiguous(), dot_model.data_config)
    with torch.no_grad():
        assert (dot_model(x).argmax(1).numpy() == labels).mean() >= 0.9  # it did learn the task
    distances = []
    for picture, dot in zip(pictures[labels == 1], dots[labels == 1]):
        heat = class_activation_map(dot_model, _input(picture, dot_model), 1)
        hottest = np.unravel_index(heat.argmax(), heat.shape)
        distances.append(math.dist(hottest, dot))
    assert np.mean(np.array(distances) <= 5) >= 0.9, np.round(distances, 1)

