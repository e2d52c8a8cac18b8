"""Scoring found cells against labels: one-to-one matching, known precision and recall, border rules."""

from __future__ import annotations

import numpy as np
import pytest

from cellscreen.screen.annotations import LabelledCell, read_point_labels, read_yolo_boxes
from cellscreen.screen.detect import FoundCell
from cellscreen.screen.score import (box_iou, box_match_distance, match_cells, match_distance, score_image,
                                     summarise, ImageScore)


def found(x: float, y: float, *, kind: str = "red", border: bool = False, half: int = 10) -> FoundCell:
    return FoundCell(id=1, kind=kind, centre=(x, y), box=(int(x) - half, int(y) - half, int(x) + half, int(y) + half),
                     area=300, single=True, touches_border=border)


def point(x: float, y: float, kind: str = "red") -> LabelledCell:
    return LabelledCell(kind=kind, centre=(x, y))


def test_a_labelled_cell_is_never_counted_twice():
    pairs = match_cells(np.array([[10, 10], [12, 10], [11, 11]]), np.array([[11, 10]]), max_distance=5)
    assert len(pairs) == 1
    score = score_image([found(10, 10), found(12, 10), found(11, 11)], [point(11, 10)], max_distance=5)
    assert (score.hits, score.found, score.labelled) == (1, 3, 1)
    assert score.precision == pytest.approx(1 / 3) and score.recall == 1.0


def test_the_assignment_is_one_to_one_and_takes_the_best_pairing():
    # Greedy nearest-first would pair found 0 with label 1 and leave label 0 unmatched.
    pairs = match_cells(np.array([[10, 0], [14, 0]]), np.array([[7, 0], [11, 0]]), max_distance=4)
    assert sorted(pairs) == [(0, 0), (1, 1)]


def test_known_precision_recall_f1_and_count_error():
    labelled = [point(0, 0), point(50, 0), point(100, 0), point(150, 0)]
    cells = [found(1, 1), found(52, 0), found(300, 300)]  # two hits, one false positive, two misses
    score = score_image(cells, labelled, max_distance=4)
    assert (score.hits, score.found, score.labelled) == (2, 3, 4)
    assert score.precision == pytest.approx(2 / 3)
    assert score.recall == pytest.approx(0.5)
    assert score.f1 == pytest.approx(2 * 2 / (3 + 4))
    assert score.count_error == pytest.approx(-0.25)


def test_a_centre_beyond_the_distance_is_no_hit():
    assert score_image([found(0, 6)], [point(0, 0)], max_distance=5).hits == 0
    assert score_image([found(0, 5)], [point(0, 0)], max_distance=5).hits == 1
    assert match_distance(40.0) == 10.0


def test_kinds_are_scored_apart():
    cells = [found(0, 0), found(50, 50, kind="white")]
    labelled = [point(0, 0), point(50, 50, kind="white")]
    assert score_image(cells, labelled, kind="red", max_distance=3).hits == 1
    white = score_image(cells, labelled, kind="white", max_distance=3)
    assert (white.hits, white.found, white.labelled) == (1, 1, 1)


def test_border_rules():
    labelled = [point(0, 0), point(100, 0)]
    cells = [found(0, 0), found(100, 1, border=True), found(200, 0, border=True)]
    keep = score_image(cells, labelled, max_distance=3, border="keep")
    assert (keep.hits, keep.found, keep.left_out) == (2, 3, 0)
    drop = score_image(cells, labelled, max_distance=3, border="drop")
    assert (drop.hits, drop.found, drop.left_out) == (1, 1, 2)
    spare = score_image(cells, labelled, max_distance=3, border="spare")
    assert (spare.hits, spare.found, spare.left_out) == (2, 2, 1)
    with pytest.raises(ValueError, match="border"):
        score_image(cells, labelled, max_distance=3, border="ignore")


def test_boxes_need_enough_overlap():
    assert box_iou(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])) == \
        pytest.approx(np.array([[1.0, 1 / 3, 0.0]]))
    labelled = [LabelledCell(kind="white", centre=(20, 20), box=(0, 0, 40, 40))]
    small = FoundCell(id=1, kind="white", centre=(20, 20), box=(12, 12, 28, 28), area=256, single=False,
                      touches_border=False)
    right = FoundCell(id=2, kind="white", centre=(21, 20), box=(2, 1, 41, 39), area=1400, single=False,
                      touches_border=False)
    distance = box_match_distance(labelled, kind="white")
    assert distance == pytest.approx(10.0)  # half of a 20 px radius
    assert score_image([small], labelled, kind="white", max_distance=distance).hits == 0  # IoU 0.16
    assert score_image([right], labelled, kind="white", max_distance=distance).hits == 1


def test_summary_pools_images_and_gives_intervals():
    scores = [ImageScore(found=10, labelled=10, hits=9), ImageScore(found=12, labelled=10, hits=10),
              ImageScore(found=8, labelled=10, hits=8), ImageScore(found=10, labelled=11, hits=10)]
    summary = summarise(scores, resamples=500)
    assert (summary.images, summary.found, summary.labelled, summary.hits) == (4, 40, 41, 37)
    assert summary.precision.value == pytest.approx(37 / 40)
    assert summary.recall.value == pytest.approx(37 / 41)
    assert summary.f1.value == pytest.approx(74 / 81)
    assert summary.median_abs_count_error.value == pytest.approx(np.median([0, 0.2, 0.2, 1 / 11]))
    for estimate in (summary.precision, summary.recall, summary.f1, summary.median_abs_count_error):
        assert estimate.low <= estimate.value <= estimate.high
    assert summary.recall.low < summary.recall.high
    assert summarise(scores, resamples=500) == summary, "the same seed gives the same intervals"
    with pytest.raises(ValueError):
        summarise([])


def test_label_files_are_read_in_pixels(tmp_path):
    points = tmp_path / "7.txt"
    points.write_text("594 95 0\n601 151 12\n\n")
    cells = read_point_labels(points)
    assert [c.centre for c in cells] == [(594.0, 95.0), (601.0, 151.0)] and cells[1].label == "12"
    assert all(c.kind == "red" and c.box is None for c in cells)
    boxes = tmp_path / "a.txt"
    boxes.write_text("0 0.5 0.5 0.25 0.5\n1 0.1 0.2 0.1 0.1\n2 0.9 0.9 0.05 0.05\n")
    cells = read_yolo_boxes(boxes, width=400, height=200)
    assert [c.kind for c in cells] == ["white", "red", "platelet"]
    assert cells[0].centre == (200.0, 100.0) and cells[0].box == (150.0, 50.0, 250.0, 150.0)
    boxes.write_text("3 0.5 0.5 0.1 0.1\n")
    with pytest.raises(ValueError, match="class 3"):
        read_yolo_boxes(boxes, width=10, height=10)


def _score_file(path, rows):
    import csv

    from cellscreen.screen.finding import ROW_COLUMNS

    with open(path, "w", newline="") as text:
        writer = csv.DictWriter(text, ROW_COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_pooled_folds_count_each_field_once_and_only_complete_ones(tmp_path):
    """Two folds' files give the score of their rows together; a field in both, or a missing file, is refused."""
    from cellscreen.errors import UserError
    from cellscreen.screen.score import pool_score_rows

    row = dict(kind="red", left_out=0)
    a = _score_file(tmp_path / "a.csv", [dict(row, image="1.jpg", complete=1, labelled=10, found=10, hits=9),
                                         dict(row, image="2.jpg", complete=0, labelled=5, found=50, hits=1)])
    b = _score_file(tmp_path / "b.csv", [dict(row, image="3.jpg", complete=1, labelled=10, found=8, hits=8)])
    pooled = pool_score_rows([a, b])["red"]
    assert (pooled.images, pooled.hits, pooled.found, pooled.labelled) == (2, 17, 18, 20)
    assert pooled.f1.value == pytest.approx(2 * 17 / 38)
    assert pool_score_rows([a, b], complete_only=False)["red"].images == 3
    with pytest.raises(UserError, match="scored in"):
        pool_score_rows([a, a])
    with pytest.raises(UserError, match="cannot read"):
        pool_score_rows([tmp_path / "missing.csv"])
