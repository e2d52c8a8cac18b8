"""The learned cell finder on tiny synthetic fields: drawn discs with point labels."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cellscreen.errors import UserError
from cellscreen.screen.annotations import read_point_labels
from cellscreen.screen.finding import score_finding
from cellscreen.screen.learned import GRAPH, WEIGHTS, LearnedFinder, learned_finder
from cellscreen.screen.learned_train import split_fields, train_detector
from cellscreen.screen.score import match_distance, score_image

RADIUS = 9


def _disc_field(seed: int, size=(112, 144), cells: int = 12) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """A pale field with pink discs (pale centres) that do not overlap, and their centres (x, y)."""
    rng = np.random.default_rng(seed)
    height, width = size
    rgb = np.empty((height, width, 3), np.float32)
    rgb[:] = (232, 222, 226)
    ys, xs = np.mgrid[0:height, 0:width]
    centres: list[tuple[float, float]] = []
    for _ in range(500):
        x, y = rng.uniform(RADIUS + 2, width - RADIUS - 2), rng.uniform(RADIUS + 2, height - RADIUS - 2)
        if all((x - a) ** 2 + (y - b) ** 2 > (2 * RADIUS + 3) ** 2 for a, b in centres):
            centres.append((x, y))
            r = np.hypot(xs - x, ys - y)
            rgb[r <= RADIUS] = (196, 112, 128)
            rgb[r <= RADIUS * 0.35] = (214, 160, 170)
        if len(centres) == cells:
            break
    rgb += rng.normal(0, 3, rgb.shape)
    return rgb.clip(0, 255).astype(np.uint8), centres


def _write_set(root, count: int = 10):
    images, labels = root / "Dataset", root / "Label"
    images.mkdir()
    labels.mkdir()
    for n in range(1, count + 1):
        rgb, centres = _disc_field(n)
        Image.fromarray(rgb).save(images / f"{n}.png")
        (labels / f"{n}.txt").write_text("".join(f"{x:.1f} {y:.1f} 0\n" for x, y in centres))
    return images, labels


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("discs")
    images, labels = _write_set(root)
    description = train_detector(images, labels, root / "run", label_format="chula", steps=100, batch_size=8,
                                 threads=1, progress=False)
    return root, description


def test_training_reduces_the_loss(trained):
    _, description = trained
    assert description["train"]["last_loss"] < 0.7 * description["train"]["first_loss"]
    assert description["kinds"] == ["red"] and description["scale"]["mode"] == "fixed"


def test_onnx_export_matches_pytorch(trained):
    import onnxruntime as ort
    import torch
    from safetensors.torch import load_file

    from cellscreen.screen.learned_net import CentreNet

    root, _ = trained
    model = CentreNet(kinds=1)
    model.load_state_dict(load_file(str(root / "run" / WEIGHTS)))
    model.eval()
    fields = np.random.default_rng(0).normal(size=(1, 3, 40, 52)).astype(np.float32)
    with torch.no_grad():
        heat, log_size, offset = (t.numpy() for t in model(torch.from_numpy(fields)))
    graph_heat, graph_size, graph_offset = ort.InferenceSession(str(root / "run" / GRAPH)).run(None, {"fields": fields})
    assert graph_heat.shape == heat.shape == (1, 1, 20, 26) and graph_offset.shape == (1, 2, 20, 26)
    np.testing.assert_allclose(graph_heat, heat, atol=1e-4)
    np.testing.assert_allclose(graph_size, log_size, atol=1e-3)
    np.testing.assert_allclose(graph_offset, offset, atol=1e-3)


def test_learned_finder_finds_the_discs_of_an_unseen_field(trained):
    root, _ = trained
    rgb, centres = _disc_field(99)
    detection = LearnedFinder(root / "run").find_cells(rgb)
    (root / "99.txt").write_text("".join(f"{x} {y} 0\n" for x, y in centres))
    score = score_image(detection.cells, read_point_labels(root / "99.txt"), max_distance=match_distance(2 * RADIUS))
    assert score.recall >= 0.9 and score.precision >= 0.9, score
    assert detection.labels.shape == rgb.shape[:2]
    assert all(cell.area > 0.3 * np.pi * RADIUS**2 for cell in detection.cells)


def test_scoring_leaves_out_the_fields_it_learned_from(trained):
    root, _ = trained
    result = score_finding(root / "Dataset", root / "Label", label_format="chula",
                           detector=f"learned:{root / 'run'}", progress=False)
    assert result.seen == 7 and result.fields == 3  # fields 1 (tuning) and 2-7 (training) are left out
    assert result.scores["red"].f1.value >= 0.9
    with pytest.raises(UserError, match="left out"):
        score_finding(root / "Dataset", root / "Label", label_format="chula", detector=f"learned:{root / 'run'}",
                      skip=["8", "9", "10"], progress=False)


def test_split_keeps_complete_fields_for_scoring():
    stems = [str(n) for n in range(1, 31)]
    split = split_fields(stems, complete={"5", "6"})
    assert set(split["held_out"]) == {"5", "6"}
    assert not set(split["train"]) & set(split["tuning"]) and not {"5", "6"} & set(split["train"])
    plain = split_fields(stems, complete=set())
    assert len(plain["tuning"]) == 3 and len(plain["held_out"]) == 9 and len(plain["train"]) == 18


def test_complete_fields_are_dealt_into_folds():
    stems = [str(n) for n in range(1, 41)]
    complete = {str(n) for n in range(21, 41)}
    halves = [split_fields(stems, complete, fold=k, folds=2) for k in (0, 1)]
    for split in halves:
        assert len(split["held_out"]) == 10 and set(split["held_out"]) <= complete
        learned = set(split["train"]) | set(split["tuning"])
        assert not learned & set(split["held_out"]) and len(learned) == 30
        assert len(set(split["tuning"]) & complete) == 3  # every 4th of the 10 complete fields learned from
    assert set(halves[0]["held_out"]) | set(halves[1]["held_out"]) == complete
    assert not set(halves[0]["held_out"]) & set(halves[1]["held_out"])
    with pytest.raises(UserError, match="K/N"):
        split_fields(stems, complete, fold=2, folds=2)


def test_refusals_are_user_errors(tmp_path):
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    Image.fromarray(_disc_field(1)[0]).save(images / "1.png")
    with pytest.raises(UserError, match="has a label file") as caught:
        train_detector(images, labels, tmp_path / "run", label_format="chula", steps=1, progress=False)
    assert "\n" not in str(caught.value)
    with pytest.raises(UserError, match="unknown label format"):
        train_detector(images, labels, tmp_path / "run", label_format="coco", steps=1, progress=False)
    (labels / "1.txt").write_text("1 0.5 0.5 0.1 0.1\n")
    with pytest.raises(UserError, match="look like YOLO") as caught:
        train_detector(images, labels, tmp_path / "run", label_format="chula", steps=1, progress=False)
    assert "\n" not in str(caught.value)
    (labels / "1.txt").write_text("10 20 0\n")
    with pytest.raises(UserError, match="cannot be read as yolo"):
        train_detector(images, labels, tmp_path / "run", label_format="yolo", steps=1, progress=False)
    for wrong, option in (({"crop": 50}, "--crop"), ({"crop": (64, 50)}, "--crop"), ({"work_diameter": 4.0}, "--work-diameter"),
                          ({"width": 0}, "--width"), ({"white_weight": 0.0}, "--white-weight")):
        with pytest.raises(UserError, match=option):
            train_detector(images, labels, tmp_path / "run", label_format="chula", steps=1, progress=False, **wrong)
    with pytest.raises(UserError, match="--dilations"):
        train_detector(images, labels, tmp_path / "run", label_format="chula", steps=1, progress=False, dilations=())
    with pytest.raises(UserError, match="unknown detector"):
        learned_finder("deep")
    (tmp_path / "notrun").mkdir()
    (tmp_path / "notrun" / "model.json").write_text(json.dumps({"model": "resnet18"}))
    with pytest.raises(UserError, match="does not describe a cell finder"):
        learned_finder(f"learned:{tmp_path / 'notrun'}")


def test_cells_train_and_score_refuse_in_one_line(trained, tmp_path):
    from tests.clitools import run_here

    root, _ = trained
    for done, words in [
            (run_here("cells", "train", str(root / "Dataset"), "--out", str(tmp_path / "r"), "-q"), ("--labels",)),
            (run_here("cells", "train", str(root / "Dataset"), "--labels", str(root / "Label"), "--format", "yolo",
                      "--out", str(tmp_path / "r"), "-q"), ("cannot be read as yolo",)),
            (run_here("cells", "train", str(root / "Dataset"), "--labels", str(root / "Label"), "--format", "chula",
                      "--out", str(root / "run"), "-q"), ("already holds a cell finder", "--overwrite")),
            (run_here("cells", "train", str(root / "Dataset"), "--labels", str(root / "Label"), "--format", "chula",
                      "--fold", "1/2", "--out", str(tmp_path / "r"), "-q"), ("--fold needs",)),
            (run_here("cells", "train", str(root / "Dataset"), "--labels", str(root / "Label"), "--format", "chula",
                      "--fold", "half", "--out", str(tmp_path / "r"), "-q"), ("K/N",)),
            (run_here("cells", "train", str(root / "Dataset"), "--labels", str(root / "Label"), "--format", "chula",
                      "--dilations", "2,four", "--out", str(tmp_path / "r"), "-q"), ("--dilations", "2,4,8")),
            (run_here("cells", "score", str(root / "Dataset"), "--labels", str(root / "Label"), "--format", "chula",
                      "--detector", f"learned:{tmp_path}", "--out", str(tmp_path / "s.csv"), "-q"),
             ("no learned cell finder",))]:
        assert done.returncode == 2, (done.stdout, done.stderr)
        assert done.stderr.count("\n") == 1 and all(word in done.stderr for word in words), done.stderr
    done = run_here("cells", "score", str(root / "Dataset"), "--labels", str(root / "Label"), "--format", "chula",
                    "--detector", f"learned:{root / 'run'}", "--out", str(tmp_path / "s.csv"), "-q")
    assert done.returncode == 0 and "7 the detector learned from left out" in done.stdout, done.stdout


def test_offset_targets_point_from_the_pixels_near_a_centre_to_it():
    from cellscreen.screen.learned_net import draw_targets

    targets = draw_targets((12, 12), np.array([[5.3, 7.6]]), np.array([0]), None, 1)
    assert targets["heat"][0, 8, 5] == pytest.approx(1.0)
    assert targets["has_offset"].sum() == 9 and targets["has_offset"][7:10, 4:7].all()
    np.testing.assert_allclose(targets["offset"][:, 8, 5], [0.3, -0.4], atol=1e-6)
    np.testing.assert_allclose(targets["offset"][:, 7, 4], [1.3, 0.6], atol=1e-6)
    # Where two cells' neighbourhoods meet, a pixel points at the nearer centre.
    both = draw_targets((12, 12), np.array([[4.0, 5.0], [6.2, 5.0]]), np.array([0, 0]), None, 1)
    np.testing.assert_allclose(both["offset"][:, 5, 5], [-1.0, 0.0], atol=1e-6)


def test_peaks_are_placed_by_the_predicted_offset():
    from cellscreen.screen.learned import STRIDE, find_peaks

    heat = np.zeros((1, 10, 10), np.float32)
    heat[0, 4, 6] = 0.9
    offset = np.zeros((2, 10, 10), np.float32)
    offset[:, 4, 6] = (0.4, -0.3)
    with_offset = find_peaks(heat, np.zeros((2, 10, 10)), [0.5], offset=offset)
    np.testing.assert_allclose(with_offset.centre, [[6.4 * STRIDE, 3.7 * STRIDE]])
    without = find_peaks(heat, np.zeros((2, 10, 10)), [0.5])
    np.testing.assert_allclose(without.centre, [[6 * STRIDE, 4 * STRIDE]])


def test_centre_shift_is_the_median_way_to_the_annotators_points():
    from cellscreen.screen.annotations import LabelledCell
    from cellscreen.screen.learned import Peaks
    from cellscreen.screen.learned_tune import TuningField, centre_shift

    rng = np.random.default_rng(0)
    found = rng.uniform(50, 450, (40, 2))

    class FixedPeaks:
        def peaks(self, rgb, diameter, thresholds, **_):
            return Peaks(kind=np.zeros(len(found), int), centre=found.copy(), score=np.ones(len(found)),
                         size=np.ones((len(found), 2))), 1.0

    labelled = [LabelledCell("red", (x + 4.0, y - 2.0)) for x, y in found]
    field = TuningField(np.zeros((500, 500, 3), np.uint8), labelled, 40.0, None)
    assert centre_shift(FixedPeaks(), [field], [{}], ("red",)) == {"red": [0.1, -0.05]}
    # Too few pairs to trust: no shift.
    few = TuningField(field.rgb, labelled[:5], 40.0, None)
    assert centre_shift(FixedPeaks(), [few], [{}], ("red",)) == {"red": [0.0, 0.0]}


def test_the_trained_run_records_its_decoding(trained):
    from cellscreen.screen.learned_tune import SPACINGS

    _, description = trained
    assert description["offset"] is True and description["peak_spacing"] in SPACINGS
    assert all(abs(v) < 0.25 for v in description["centre_shift"]["red"])  # the discs' labels are their centres


def test_a_run_made_before_the_offset_head_still_finds_cells(trained, tmp_path):
    import shutil

    import torch
    from safetensors.torch import load_file

    from cellscreen.screen.learned_net import CentreNet

    root, _ = trained
    old = tmp_path / "old-run"
    shutil.copytree(root / "run", old)
    weights = {k: v for k, v in load_file(str(old / WEIGHTS)).items() if not k.startswith("offset.")}
    model = CentreNet(kinds=1, offset=False)
    model.load_state_dict(weights)
    model.eval()
    torch.onnx.export(model, (torch.zeros(1, 3, 64, 96),), str(old / GRAPH), input_names=["fields"],
                      output_names=["heat", "log_size"], dynamic_axes={"fields": {2: "height", 3: "width"}},
                      opset_version=17, dynamo=False)
    description = json.loads((old / "model.json").read_text())
    for key in ("offset", "centre_shift", "peak_spacing"):
        description.pop(key)
    (old / "model.json").write_text(json.dumps(description))
    rgb, centres = _disc_field(99)
    detection = LearnedFinder(old).find_cells(rgb)
    (tmp_path / "99.txt").write_text("".join(f"{x} {y} 0\n" for x, y in centres))
    score = score_image(detection.cells, read_point_labels(tmp_path / "99.txt"),
                        max_distance=match_distance(2 * RADIUS))
    assert score.recall >= 0.9 and score.precision >= 0.9, score


def test_a_quarter_of_the_crops_start_at_the_fields_edge():
    from cellscreen.screen.learned_train import EDGE_CROPS, _crop_start

    rng = np.random.default_rng(0)
    starts = np.array([_crop_start(rng, 300, 64) for _ in range(4000)])
    assert starts.min() == 0 and starts.max() == 300 - 64
    at_edge = np.mean((starts == 0) | (starts == 300 - 64))
    assert EDGE_CROPS - 0.03 < at_edge < EDGE_CROPS + 0.03
    assert {_crop_start(rng, 40, 64) for _ in range(200)} <= set(range(-24, 1))  # a field smaller than the crop


def test_the_scale_check_mends_a_measure_far_off_and_leaves_a_right_one(trained):
    root, description = trained
    finder = LearnedFinder(root / "run")
    rgb, _ = _disc_field(98)
    right = description["scale"]["diameter"]
    assert finder.checked_diameter(rgb, right)[0] == right
    mended, maps = finder.checked_diameter(rgb, right / 2.8)
    assert 0.7 * right <= mended <= 1.4 * right
    assert maps["heat"].shape[1] == pytest.approx(rgb.shape[0] * 16 / mended / 2, abs=2)


def test_a_run_keeps_its_network_crop_and_work_scale_and_is_read_at_that_scale(tmp_path):
    from safetensors.torch import load_file

    from cellscreen.screen.learned_net import CentreNet

    images, labels = _write_set(tmp_path)
    description = train_detector(images, labels, tmp_path / "run", label_format="chula", steps=3, batch_size=2,
                                 crop=48, width=8, work_diameter=24.0, dilations=(2, 4, 8), threads=1, progress=False)
    assert description["train"]["crop"] == 48 and description["width"] == 8
    assert description["work_diameter"] == 24.0 and description["dilations"] == [2, 4, 8]
    CentreNet(kinds=1, width=8, dilations=(2, 4, 8)).load_state_dict(load_file(str(tmp_path / "run" / WEIGHTS)))
    finder = LearnedFinder(tmp_path / "run")
    rgb, _ = _disc_field(97)
    diameter = description["scale"]["diameter"]
    heat = finder.heat_of(rgb, diameter)["heat"]
    assert heat.shape[1] == pytest.approx(rgb.shape[0] * 24 / diameter / 2, abs=1)


def test_the_centre_blobs_grow_with_the_work_scale():
    from cellscreen.screen.learned_net import draw_targets

    small, large = (draw_targets((40, 40), np.array([[20.0, 20.0]]), np.array([0]), None, 1, work_diameter=d)
                    for d in (16.0, 32.0))
    assert large["heat"].sum() > 3 * small["heat"].sum()


def test_a_kind_weighed_more_counts_more_in_the_loss():
    import torch

    from cellscreen.screen.learned_net import centre_loss, draw_targets

    targets = draw_targets((16, 16), np.array([[4.0, 4.0], [11.0, 11.0]]), np.array([0, 1]), None, 2)
    targets = {name: torch.from_numpy(value)[None] for name, value in targets.items()}
    heat = torch.full((1, 2, 16, 16), 0.2)
    outputs = (heat, torch.zeros(1, 2, 16, 16), torch.zeros(1, 2, 16, 16))
    trusted = torch.ones(1, 1, 16, 16)
    plain = centre_loss(outputs, targets, trusted)
    assert torch.isclose(centre_loss(outputs, targets, trusted, torch.tensor([1.0, 1.0])), plain)
    assert centre_loss(outputs, targets, trusted, torch.tensor([1.0, 3.0])) > plain


def test_the_discs_at_the_centres_are_those_of_a_distance_transform():
    from scipy import ndimage as ndi

    from cellscreen.screen.learned import _discs

    rng = np.random.default_rng(1)
    rows, cols = rng.integers(0, 60, 15), rng.integers(0, 80, 15)
    rows[:2], cols[:2] = (0, 59), (79, 0)  # discs cut by the border
    markers = np.ones((60, 80), bool)
    markers[rows, cols] = False
    for radius in (0.5, 3.0, 4.7):
        np.testing.assert_array_equal(_discs((60, 80), rows, cols, radius),
                                      ndi.distance_transform_edt(markers) <= radius)


def test_crops_of_several_sizes_take_turns(tmp_path):
    images, labels = _write_set(tmp_path)
    description = train_detector(images, labels, tmp_path / "run", label_format="chula", steps=2, batch_size=2,
                                 crop=(48, 64), threads=1, progress=False)
    assert description["train"]["crop"] == [48, 64]
