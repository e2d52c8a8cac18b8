"""The classical cell finder on tiny drawn fields, and on three real Chula fields when the data is here."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi

from cellscreen.screen.annotations import read_point_labels
from cellscreen.screen.detect import Detection, find_cells
from cellscreen.screen.score import score_image
from tests.conftest import REAL_DATA

BACKGROUND = (150, 160, 170)
RED_CELL = (150, 105, 140)
NUCLEUS = (85, 40, 150)
CYTOPLASM = (175, 160, 190)


def _disc(canvas: np.ndarray, centre: tuple[float, float], radius: float, colour, *, squash: float = 1.0) -> None:
    yy, xx = np.ogrid[: canvas.shape[0], : canvas.shape[1]]
    inside = ((xx - centre[0]) / radius) ** 2 + ((yy - centre[1]) / (radius * squash)) ** 2 <= 1
    canvas[inside] = colour


def drawn_field(scale: float = 1.0, seed: int = 0) -> tuple[np.ndarray, dict]:
    """A 240x200 field (times ``scale``): 5 lone red cells, a touching pair, a white cell, a platelet,
    and a red cell cut by the left border. Returns the picture and what is on it."""
    s = scale
    canvas = np.zeros((round(200 * s), round(240 * s), 3), np.float32)
    canvas[:] = BACKGROUND
    lone = [(40, 40), (110, 35), (190, 50), (60, 150), (200, 160)]
    for x, y in lone:
        _disc(canvas, (x * s, y * s), 15 * s, RED_CELL)
    _disc(canvas, (130 * s, 75 * s), 15 * s, RED_CELL, squash=0.85)  # an ellipse
    pair = [(100, 120), (126, 128)]  # centres 27 px apart: the two cells overlap
    for x, y in pair:
        _disc(canvas, (x * s, y * s), 15 * s, RED_CELL)
    _disc(canvas, (175 * s, 110 * s), 21 * s, CYTOPLASM)  # a white cell: pale cytoplasm, dark nucleus
    _disc(canvas, (175 * s, 110 * s), 13 * s, NUCLEUS)
    _disc(canvas, (40 * s, 95 * s), 4 * s, NUCLEUS)  # a platelet
    _disc(canvas, (6 * s, 185 * s), 15 * s, RED_CELL)  # cut by the left border
    rng = np.random.default_rng(seed)
    canvas = ndi.gaussian_filter(canvas, sigma=(s, s, 0)) + rng.normal(0, 3, canvas.shape)
    truth = {"red": [(x * s, y * s) for x, y in [*lone, (130, 75), *pair]], "white": [(175 * s, 110 * s)],
             "platelet": (40 * s, 95 * s), "border": (6 * s, 185 * s)}
    return canvas.clip(0, 255).astype(np.uint8), truth


def _nearest(detection: Detection, point: tuple[float, float]):
    return min(detection.cells, key=lambda c: np.hypot(c.centre[0] - point[0], c.centre[1] - point[1]))


def _close(cell, point, tolerance: float) -> bool:
    return np.hypot(cell.centre[0] - point[0], cell.centre[1] - point[1]) <= tolerance


@pytest.fixture(scope="module")
def drawn():
    field, truth = drawn_field()
    return field, truth, find_cells(field)


def test_every_red_cell_is_found_once_and_the_pair_is_split(drawn):
    _, truth, detection = drawn
    inside = [c for c in detection.red if not c.touches_border]
    assert len(inside) == len(truth["red"])
    for point in truth["red"]:
        assert _close(_nearest(detection, point), point, 5), point


def test_the_white_cell_is_told_apart_by_its_stain(drawn):
    _, truth, detection = drawn
    assert len(detection.white) == 1
    white = detection.white[0]
    assert _close(white, truth["white"][0], 4)
    x0, y0, x1, y1 = white.box
    assert x1 - x0 >= 36 and y1 - y0 >= 36, "the box holds the cytoplasm, not the nucleus only"
    assert not white.single


def test_a_platelet_is_not_a_cell(drawn):
    _, truth, detection = drawn
    assert not _close(_nearest(detection, truth["platelet"]), truth["platelet"], 10)


def test_a_cell_cut_by_the_border_is_kept_and_marked(drawn):
    _, truth, detection = drawn
    cut = _nearest(detection, truth["border"])
    assert cut.touches_border and cut.box[0] == 0
    assert sum(c.touches_border for c in detection.cells) == 1


def test_labels_boxes_and_areas_agree(drawn):
    field, _, detection = drawn
    assert detection.labels.dtype == np.int32 and detection.labels.shape == field.shape[:2]
    assert sorted(c.id for c in detection.cells) == sorted(set(np.unique(detection.labels)) - {0})
    for cell in detection.cells:
        x0, y0, x1, y1 = cell.box
        inside = detection.labels == cell.id
        assert inside.sum() == cell.area
        assert not inside[:y0].any() and not inside[y1:].any() and not inside[:, :x0].any() and not inside[:, x1:].any()
        assert x0 <= cell.centre[0] < x1 and y0 <= cell.centre[1] < y1


def test_lone_round_cells_are_single_and_the_diameter_is_measured(drawn):
    _, truth, detection = drawn
    assert all(_nearest(detection, point).single for point in truth["red"][:5])
    assert detection.cell_diameter == pytest.approx(30, rel=0.12)


def test_the_same_field_three_times_larger_gives_the_same_cells():
    field, truth = drawn_field(scale=3.0)
    detection = find_cells(field)
    assert len([c for c in detection.red if not c.touches_border]) == len(truth["red"])
    assert len(detection.white) == 1
    assert detection.cell_diameter == pytest.approx(90, rel=0.12)
    assert detection.labels.shape == field.shape[:2]


def test_a_given_cell_diameter_is_used_and_returned(drawn):
    field, truth, _ = drawn
    detection = find_cells(field, cell_diameter=30.0)
    assert detection.cell_diameter == 30.0
    assert len([c for c in detection.red if not c.touches_border]) == len(truth["red"])


def test_an_unevenly_lit_field_gives_the_same_cells():
    field, truth = drawn_field()
    light = np.linspace(0.7, 1.0, field.shape[1])[None, :, None]  # a fifth darker on the left, as under a lamp
    detection = find_cells((field * light).astype(np.uint8))
    assert len([c for c in detection.red if not c.touches_border]) == len(truth["red"])
    assert len(detection.white) == 1


def test_grey_and_blank_images_do_not_fail():
    field, _ = drawn_field()
    grey = field.mean(axis=2).astype(np.uint8)
    assert len(find_cells(grey).cells) >= 5
    blank = np.full((64, 80, 3), 200, np.uint8)
    detection = find_cells(blank)
    assert detection.cells == [] and not detection.labels.any()


REAL_FIELDS = (1, 4, 6)  # fields whose every red cell is labelled


@pytest.mark.real_data
@pytest.mark.parametrize("number", REAL_FIELDS)
def test_real_chula_field(number):
    folder = REAL_DATA / "smears" / "chula-rbc12"
    if not (folder / "Dataset").is_dir():
        pytest.skip("real data (../shared/data or $CELLSCREEN_DATA) is not available")
    with Image.open(folder / "Dataset" / f"{number}.jpg") as image:
        detection = find_cells(np.asarray(image.convert("RGB")))
    labelled = read_point_labels(folder / "Label" / f"{number}.txt")
    # Chula's points sit up to a third of a cell off the centre even on lone round cells, so this checks finding
    # (within one radius) and counting; the benchmark gives the stricter half-radius figures.
    score = score_image(detection.cells, labelled, max_distance=detection.cell_diameter / 2, border="spare")
    assert 30 < detection.cell_diameter < 50
    assert score.recall >= 0.85 and score.precision >= 0.85, score
    assert abs(score.count_error) <= 0.12, score


FIBRE = (95, 105, 115)  # dark grey: every colour darkened alike, as a fibre or a microscope's pointer


def _fibre_field() -> tuple[np.ndarray, dict]:
    """The drawn field with a grey fibre laid across the cell at (190, 50), a loose piece of fibre, and a
    green scale bar drawn over the cell at (60, 150)."""
    field, truth = drawn_field()
    canvas = field.astype(np.float32)
    yy, xx = np.mgrid[: canvas.shape[0], : canvas.shape[1]]
    crossing = (np.abs(xx - 190) <= 2) & (np.abs(yy - 50) <= 22)  # a thin fibre across the cell
    canvas[crossing] = FIBRE
    piece = (np.abs(xx - 150) <= 5) & (np.abs(yy - 175) <= 14)  # a piece of fibre on its own, cell-sized
    canvas[piece] = FIBRE
    bar = (np.abs(yy - 152) <= 1) & (np.abs(xx - 60) <= 20)  # a scale bar's line, drawn in green
    canvas[bar] = (40, 230, 40)
    chromatin = (xx - 113) ** 2 + (yy - 33) ** 2 <= 16  # a parasite's dark purple dot inside the cell at (110, 35)
    canvas[chromatin] = (105, 45, 125)
    truth = {**truth, "crossed": (190, 50), "piece": (150, 175), "marked": (60, 150), "ring": (110, 35)}
    return canvas.clip(0, 255).astype(np.uint8), truth


def test_a_cell_crossed_by_a_fibre_or_drawn_over_is_not_judged_and_a_fibre_piece_is_not_a_cell():
    field, truth = _fibre_field()
    detection = find_cells(field, cell_diameter=30.0)
    crossed, marked = _nearest(detection, truth["crossed"]), _nearest(detection, truth["marked"])
    assert _close(crossed, truth["crossed"], 5) and not crossed.single and crossed.grey_share > 0.05
    assert _close(marked, truth["marked"], 5) and not marked.single and marked.mark_share > 0.01
    assert not _close(_nearest(detection, truth["piece"]), truth["piece"], 10)
    # the other lone cells are untouched, the one with a parasite's purple chromatin too: it is not grey
    for point in (truth["red"][0], truth["ring"], truth["red"][4]):
        cell = _nearest(detection, point)
        assert cell.single and cell.grey_share == 0 and cell.mark_share == 0


def _field_with_stuck_platelet() -> tuple[np.ndarray, dict]:
    """Six lone red cells; one has a platelet stuck on its outline, another a purple dot inside (as a parasite)."""
    canvas = np.zeros((200, 240, 3), np.float32)
    canvas[:] = BACKGROUND
    centres = [(40, 40), (110, 40), (190, 45), (50, 150), (125, 150), (195, 150)]
    for x, y in centres:
        _disc(canvas, (x, y), 15, RED_CELL)
    platelet = (110 + 18, 40)  # centred 3 px outside the cell's edge: most of it sticks out
    _disc(canvas, platelet, 5, NUCLEUS)
    dot = (125 + 5, 150)  # inside the cell
    _disc(canvas, dot, 3, NUCLEUS)
    canvas = ndi.gaussian_filter(canvas, sigma=(1, 1, 0)) + np.random.default_rng(0).normal(0, 3, canvas.shape)
    return canvas.clip(0, 255).astype(np.uint8), {"with_platelet": centres[1], "platelet": platelet,
                                                  "with_dot": centres[4], "dot": dot}


def test_a_platelet_stuck_on_a_red_cells_outline_is_not_cut_with_it(monkeypatch):
    field, truth = _field_with_stuck_platelet()
    detection = find_cells(field)
    cell = _nearest(detection, truth["with_platelet"])
    px, py = truth["platelet"]
    assert detection.labels[py, px + 2] != cell.id, "the platelet's chromatin is left out of the cell"
    assert cell.single and cell.ellipse_fill > 0.95
    inside = _nearest(detection, truth["with_dot"])
    dx, dy = truth["dot"]
    assert detection.labels[dy, dx] == inside.id, "a purple dot inside a cell (a parasite) stays in it"
    # without the smoothing of the outline, the watershed gives the platelet to the cell
    import cellscreen.screen.detect as detect
    monkeypatch.setattr(detect, "BUMP_RADIUS", 0.0)
    before = find_cells(field)
    assert before.labels[py, px + 2] == _nearest(before, truth["with_platelet"]).id
