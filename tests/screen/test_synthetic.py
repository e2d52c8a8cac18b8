"""Synthetic fields: real-looking cells placed apart on a real-looking background, with their truth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from cellscreen.screen import synthetic


def disc_cell(radius: int, colour=(220, 160, 160)) -> np.ndarray:
    """A cell crop as the NIH cells are: a disc of colour, black outside, in its tight box."""
    side = 2 * radius + 1
    yy, xx = np.mgrid[:side, :side]
    crop = np.zeros((side, side, 3), np.uint8)
    crop[(yy - radius) ** 2 + (xx - radius) ** 2 <= radius**2] = colour
    return crop


def smear(seed: int = 0) -> np.ndarray:
    """A bright field with a left-to-right light gradient, some dark cells and grain."""
    rng = np.random.default_rng(seed)
    field = np.zeros((120, 160, 3), np.float64) + (200, 195, 185)
    field += np.linspace(-10, 10, 160)[None, :, None]
    yy, xx = np.mgrid[:120, :160]
    for cy, cx in ((30, 30), (80, 100), (60, 140)):
        field[(yy - cy) ** 2 + (xx - cx) ** 2 < 15**2] = (170, 110, 120)
    return np.clip(field + rng.normal(0, 3, field.shape), 0, 255).astype(np.uint8)


def test_placed_cells_do_not_touch_each_other_or_the_border_and_the_truth_says_where_they_are():
    background = np.full((200, 260, 3), 200, np.uint8)
    cells = [disc_cell(12, (220, 150, 150)) for _ in range(6)] + [disc_cell(12, (120, 60, 160)) for _ in range(2)]
    field = synthetic.make_field(cells, ["Uninfected"] * 6 + ["Parasitized"] * 2, [False] * 6 + [True] * 2,
                                 background, seed=3)
    assert len(field.cells) == 8 and field.positive == 2 and field.parasitemia == pytest.approx(25.0)
    objects, found = ndi.label((field.image != 200).any(axis=2))
    assert found == 8  # apart: every cell is its own object
    for cell in field.cells:
        x0, y0, x1, y1 = cell.box
        assert 0 < x0 and 0 < y0 and x1 < 260 and y1 < 200
        assert objects[round(cell.centre[1]), round(cell.centre[0])] > 0
        assert cell.area == (disc_cell(12).max(axis=2) > 0).sum()
        colour = field.image[round(cell.centre[1]), round(cell.centre[0])]
        assert tuple(colour) == ((120, 60, 160) if cell.positive else (220, 150, 150))
    assert field.cell_diameter == pytest.approx(2 * np.sqrt(field.cells[0].area / np.pi))


def test_cells_are_resized_by_the_scale():
    background = np.full((200, 200, 3), 200, np.uint8)
    field = synthetic.make_field([disc_cell(20)], ["a"], [False], background, scale=0.5)
    assert field.cell_diameter == pytest.approx(20.5, abs=1.5)
    x0, y0, x1, y1 = field.cells[0].box
    assert x1 - x0 == pytest.approx(20.5, abs=2)


def test_a_field_without_room_for_the_cells_is_refused():
    with pytest.raises(ValueError, match="no room"):
        synthetic.make_field([disc_cell(20)] * 20, ["a"] * 20, [False] * 20, np.full((100, 100, 3), 200, np.uint8),
                             attempts=50)


def test_the_background_has_the_fields_colour_light_and_grain_without_its_cells():
    field = smear()
    background = synthetic.smear_background(field, (240, 320), seed=1)
    assert background.shape == (240, 320, 3) and background.dtype == np.uint8
    assert np.abs(np.median(background.reshape(-1, 3), axis=0) - (200, 195, 185)).max() < 3
    left, right = background[:, :40].mean(), background[:, -40:].mean()
    assert right - left > 8  # the light gradient is kept
    assert background.min() > 160  # no dark cell left in it
    assert 1.5 < background[:, 150:170].std(axis=(0, 1)).mean() < 5


def test_a_field_of_only_cells_has_no_background_to_estimate():
    with pytest.raises(ValueError, match="background"):
        synthetic.smear_background(np.full((30, 30, 3), 200, np.uint8), (10, 10))


@pytest.mark.real_data
def test_regular_nih_cells_are_whole_round_cells(real_data):
    from cellscreen.data.images import load_rgb

    paths = synthetic.regular_cells(real_data / "malaria-nih" / "cell_images" / "Uninfected", count=5, seed=2)
    assert len(paths) == 5 and paths == sorted(paths)
    for path in paths:
        mask = synthetic.cell_mask(load_rgb(path))
        assert ndi.label(mask)[1] == 1
        assert 2 * np.sqrt(mask.sum() / np.pi) == pytest.approx(125, rel=0.35)


def test_confident_cells_are_those_the_model_gives_their_class_surely(tmp_path):
    from PIL import Image

    class Model:  # calls a cell Parasitized with the probability of its red level over 255
        classes, input_size, border_crop, interpolation = ["Uninfected", "Parasitized"], 8, 0, "bicubic"

        def predict(self, images):
            p = images[..., 0].max(axis=(1, 2)) / 255.0
            return np.stack([1 - p, p], axis=1)

    paths = []
    for red in (250, 200, 245):
        paths.append(tmp_path / f"cell{red}.png")
        Image.fromarray(disc_cell(6, (red, 100, 100))).save(paths[-1])
    assert synthetic.confident_cells(Model(), paths, "Parasitized") == [paths[0], paths[2]]
    assert synthetic.confident_cells(Model(), paths, "Uninfected") == []
